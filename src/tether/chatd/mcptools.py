"""Workspace MCP tools (docs/behaviour.md §5.5): discovery, the per-chat cache, and the
tools the model calls (``<server>__<tool>``).

The workspace agent runs the MCP servers of its ``.mcp.json`` and serves their aggregated
tool list; chatd asks the agent, never the servers. :class:`McpToolCache` is process-wide
(created by ``install_chatd``, shared by the turn runner and the worker) and keyed by chat id;
an entry remembers the agent that produced it and is valid only for that agent.

Per turn, :meth:`McpDiscovery.discover`:

* **fast path** — the chat's connection cache holds a conn and agent, and the cache has an
  entry for that agent: the cached tools, with **zero store queries and no dial** (PL-2);
* **slow path**, bounded by ``timeout_s`` (setting ``mcp_discovery_timeout_s``): the pre-dial
  gate (a stopped workspace → the entry is deleted, no tools, no dial: PL-6, PL-1), a subagent
  seeds from its parent's entry for the same agent, else the connection and the agent's
  list; only a **non-empty** list is cached (PL-5: cold MCP servers may answer empty);
  failures and timeouts are logged and give no tools (PL-4).

Every failure here is "no workspace MCP tools this turn", never a turn failure. Build events
(the worker) and 404 answers (the tools, PL-7) invalidate entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic_ai import Tool
from pydantic_ai.exceptions import ToolFailed

from tether.agent.schemas import McpCallResult, McpTool
from tether.chatd.messages import INVALID_JSON_KEY, render_tool_error
from tether.chatd.tools.base import ToolContext, invalid_arguments, tool_error
from tether.clock import Clock
from tether.errors import (
    AgentRequestFailed,
    NoRunningAgent,
    NoWorkspace,
    TetherError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTION_FAILED = "workspace connection failed: "
MCP_TOOL_ERROR = "mcp_tool_error"


async def within(clock: Clock, seconds: float, aw: Awaitable[T]) -> T:
    """Await ``aw`` for at most ``seconds`` of ``clock`` time; then cancel it and raise
    :class:`TimeoutError`. (A clock timer, so tests drive deadlines with a fake clock.)"""
    task = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if task.cancelled():
        raise TimeoutError(f"gave up after {seconds:g}s")
    return task.result()


@dataclass(frozen=True)
class McpEntry:
    agent_id: uuid.UUID
    tools: tuple[McpTool, ...]


class McpToolCache:
    """Discovered workspace MCP tools per chat, each entry tagged with its agent."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, McpEntry] = {}

    def get(self, chat_id: uuid.UUID, agent_id: uuid.UUID) -> tuple[McpTool, ...] | None:
        """The chat's tools if they were discovered through ``agent_id``."""
        entry = self._entries.get(chat_id)
        if entry is None or entry.agent_id != agent_id:
            return None
        return entry.tools

    def put(self, chat_id: uuid.UUID, agent_id: uuid.UUID, tools: list[McpTool]) -> None:
        """Remember a non-empty list (an empty one is never cached: servers may be cold)."""
        if tools:
            self._entries[chat_id] = McpEntry(agent_id, tuple(tools))

    def invalidate(self, chat_id: uuid.UUID) -> None:
        self._entries.pop(chat_id, None)

    def __contains__(self, chat_id: object) -> bool:
        return chat_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class McpDiscovery:
    """Finds a chat's workspace MCP tools for a turn (see the module docstring)."""

    def __init__(self, cache: McpToolCache, *, clock: Clock, timeout_s: float) -> None:
        self.cache = cache
        self._clock = clock
        self._timeout_s = timeout_s

    async def discover(self, ctx: ToolContext) -> list[McpTool]:
        """The MCP tools the model gets this turn (``[]`` on any failure; never raises
        except on cancellation)."""
        conns = ctx.conns
        if conns.binding.workspace_id is None:
            return []
        agent = conns.cached_agent
        if (
            conns.cached_conn is not None
            and agent is not None
            and agent.workspace_id == conns.binding.workspace_id
        ):
            cached = self.cache.get(ctx.chat_id, agent.id)
            if cached is not None:
                return list(cached)
        try:
            return await within(self._clock, self._timeout_s, self._slow(ctx))
        except TimeoutError:
            log.warning(
                "chat %s: workspace MCP discovery timed out after %gs",
                ctx.chat_id,
                self._timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("chat %s: workspace MCP discovery failed: %s", ctx.chat_id, err)
        return []

    async def _slow(self, ctx: ToolContext) -> list[McpTool]:
        conns = ctx.conns
        try:
            agent_id = await ctx.gate_agent_id()
        except (NoRunningAgent, NoWorkspace):
            self.cache.invalidate(ctx.chat_id)  # no running agent: skip quietly, never dial
            return []
        parent = ctx.chat.parent_chat_id
        if parent is not None:
            seeded = self.cache.get(parent, agent_id)
            if seeded is not None:  # a subagent on its parent's agent: same servers
                self.cache.put(ctx.chat_id, agent_id, list(seeded))
                return list(seeded)
        listing = await ctx.with_agent(lambda c: c.mcp_tools(timeout=self._timeout_s))
        used = conns.cached_agent.id if conns.cached_agent is not None else agent_id
        for server in listing.servers:
            if server.status == "error":
                log.info("chat %s: MCP server %s: %s", ctx.chat_id, server.name, server.error)
        self.cache.put(ctx.chat_id, used, listing.tools)
        return listing.tools


def _result_value(result: McpCallResult) -> Any:
    """Text content as one string; anything else (images, audio) as a list of items with
    base64 ``data`` and ``mime_type``."""
    items = result.content
    if all(c.type == "text" for c in items):
        return "\n".join(c.text or "" for c in items)
    return [c.model_dump(mode="json", exclude_none=True) for c in items]


def mcp_tool(ctx: ToolContext, spec: McpTool, cache: McpToolCache) -> Tool[Any]:
    """The pydantic-ai tool for one workspace MCP tool: the model sees ``spec.name`` with the
    server's JSON schema; a call goes over the chat's agent connection (same liveness and
    repair as every workspace tool)."""
    name = spec.name

    async def run(**kwargs: Any) -> Any:
        if INVALID_JSON_KEY in kwargs:
            raise invalid_arguments(
                f"the arguments are not a JSON object: {str(kwargs[INVALID_JSON_KEY])[:200]}"
            )
        try:
            # Never re-sent after a transport failure: an MCP tool may have side effects.
            result = await ctx.with_agent(lambda c: c.mcp_call(name, kwargs), retry_request=False)
        except AgentRequestFailed as err:
            if err.status == 404:
                cache.invalidate(ctx.chat_id)  # server or tool gone: rediscover next turn
            raise tool_error(err) from err
        except asyncio.CancelledError:
            raise
        except TetherError as err:
            remediation = getattr(err, "remediation", None) or None
            raise ToolFailed(
                render_tool_error(CONNECTION_FAILED + err.message, err.code, remediation)
            ) from err
        except Exception as err:
            log.exception("MCP tool %s failed unexpectedly", name)
            raise tool_error(err) from err
        if result.is_error:
            raise ToolFailed(render_tool_error(_result_value(result), MCP_TOOL_ERROR))
        return _result_value(result)

    schema = dict(spec.input_schema) if isinstance(spec.input_schema, dict) else {}
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    description = spec.description or f"{spec.tool} (MCP server {spec.server} in the workspace)"
    return Tool.from_schema(run, name=name, description=description, json_schema=schema)


def mcp_tools(
    ctx: ToolContext, specs: list[McpTool], cache: McpToolCache, *, taken: set[str]
) -> list[Tool[Any]]:
    """Tools for ``specs``, skipping names already ``taken`` (built-in tools, duplicates)."""
    out: list[Tool[Any]] = []
    seen = set(taken)
    for spec in specs:
        if spec.name in seen:
            log.warning(
                "chat %s: MCP tool %s shadows another tool; skipped", ctx.chat_id, spec.name
            )
            continue
        seen.add(spec.name)
        out.append(mcp_tool(ctx, spec, cache))
    return out
