"""Workspace MCP tools (docs/behaviour.md §5.5): discovery, the per-chat cache, and the
tools the model calls (``<server>__<tool>``).

The workspace agent runs the MCP servers of its ``.mcp.json`` and serves their aggregated
tool list; chatd asks the agent, never the servers. :class:`McpToolCache` is process-wide
(created by ``install_chatd``, shared by the turn runner and the worker) and keyed by chat id;
an entry remembers the agent that produced it and is valid only for that agent.

Per turn, :meth:`McpDiscovery.discover`:

* **fast path** — the chat's connection cache holds a conn and agent, and the cache has a
  *settled* entry (every server ok) for that agent: the cached tools, with **zero store
  queries and no dial** (PL-2);
* **refresh** — an *unsettled* entry for that agent (a server failed or was still
  connecting): one listing over the cached connection, no gate. The agent keeps the negative
  cache (a failed server is retried in the background after a doubling backoff, never
  waited for), so this costs one request and also sees a changed ``.mcp.json`` at once;
* **slow path**, bounded by ``timeout_s`` (setting ``mcp_discovery_timeout_s``): the pre-dial
  gate (a stopped workspace → the entry is deleted, no tools, no dial: PL-6, PL-1), a subagent
  seeds from its parent's settled entry for the same agent, else the connection and the
  agent's list; a settled **empty** list is not cached (PL-5); failures and timeouts are
  logged and give no tools (PL-4).

The agent waits at most ``first_wait_s`` (setting ``mcp_first_call_wait_s``, 2 s) for servers
on their first attempt, each bounded on the agent by ``mcp_server_connect_timeout_s``; the
rest are ``pending`` and :meth:`McpDiscovery.follow` (run by the turn, ``mcpturn.py``) lists
again until they settle, so their tools join the next model step.

Every failure here is "no workspace MCP tools this turn", never a turn failure. Build events
(the worker) and 404 answers (the tools, PL-7) invalidate entries.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic_ai import Tool
from pydantic_ai.exceptions import ToolFailed

from tether.agent.schemas import McpCallResult, McpServerStatus, McpTool, McpToolList
from tether.chatd.messages import INVALID_JSON_KEY, render_tool_error
from tether.chatd.tools.base import ToolContext, invalid_arguments, tool_error
from tether.clock import Clock, within
from tether.errors import (
    AgentRequestFailed,
    NoRunningAgent,
    NoWorkspace,
    TetherError,
)
from tether.observability.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTION_FAILED = "workspace connection failed: "
MCP_TOOL_ERROR = "mcp_tool_error"


@dataclass(frozen=True)
class McpEntry:
    agent_id: uuid.UUID
    tools: tuple[McpTool, ...]
    settled: bool = True  # every server answered ok: the fast path may serve the entry


@dataclass(frozen=True)
class Discovery:
    """One discovery's outcome: the tools now, whether servers are still connecting (their
    tools join a later step), and the servers that failed."""

    tools: tuple[McpTool, ...] = ()
    pending: tuple[str, ...] = ()
    failed: tuple[McpServerStatus, ...] = ()
    answered: bool = True  # False: discovery itself failed, nothing is known of the servers

    @classmethod
    def of(cls, listing: McpToolList) -> Discovery:
        return cls(
            tools=tuple(listing.tools),
            pending=tuple(s.name for s in listing.servers if s.status == "pending"),
            failed=tuple(s for s in listing.servers if s.status == "error"),
        )

    @property
    def settled(self) -> bool:
        return not self.pending and not self.failed


class McpToolCache:
    """Discovered workspace MCP tools per chat, each entry tagged with its agent, and the
    server failures already reported to each chat."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, McpEntry] = {}
        self._reported: dict[uuid.UUID, dict[str, str]] = {}

    def get(self, chat_id: uuid.UUID, agent_id: uuid.UUID) -> tuple[McpTool, ...] | None:
        """The chat's tools if they were discovered through ``agent_id``."""
        entry = self.entry(chat_id, agent_id)
        return entry.tools if entry is not None else None

    def entry(self, chat_id: uuid.UUID, agent_id: uuid.UUID) -> McpEntry | None:
        entry = self._entries.get(chat_id)
        if entry is None or entry.agent_id != agent_id:
            return None
        return entry

    def put(
        self,
        chat_id: uuid.UUID,
        agent_id: uuid.UUID,
        tools: Sequence[McpTool],
        *,
        settled: bool = True,
    ) -> None:
        """Remember a listing. A settled empty one is not cached (PL-5: the next turn asks
        again); an unsettled one is, so the next turn asks the agent directly (no gate)."""
        if tools or not settled:
            self._entries[chat_id] = McpEntry(agent_id, tuple(tools), settled)
        else:
            self._entries.pop(chat_id, None)

    def unsettle(self, chat_id: uuid.UUID) -> None:
        """A call failed: the next turn asks the agent again (one listing, no gate), which
        reports a server that went away and its backoff."""
        entry = self._entries.get(chat_id)
        if entry is not None and entry.settled:
            self._entries[chat_id] = McpEntry(entry.agent_id, entry.tools, settled=False)

    def invalidate(self, chat_id: uuid.UUID) -> None:
        """Forget the chat's entry and its reported failures (a new build reports anew)."""
        self._entries.pop(chat_id, None)
        self._reported.pop(chat_id, None)

    def unreported(self, chat_id: uuid.UUID, found: Discovery) -> list[McpServerStatus]:
        """The failed servers of ``found`` not yet reported to the chat (marked reported
        now). A server is reported again only after it was seen working (or left the
        config) in between — a background retry that fails again is not news. A failed
        discovery (``answered=False``) changes nothing."""
        if not found.answered:
            return []
        reported = self._reported.setdefault(chat_id, {})
        failed = {s.name: s for s in found.failed}
        for name in list(reported):
            if name not in failed and name not in found.pending:  # ok now, or removed
                del reported[name]
        fresh = [s for name, s in failed.items() if name not in reported]
        for status in fresh:
            reported[status.name] = status.error or ""
        if not reported:
            self._reported.pop(chat_id, None)
        return fresh

    def __contains__(self, chat_id: object) -> bool:
        return chat_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class McpDiscovery:
    """Finds a chat's workspace MCP tools for a turn (see the module docstring)."""

    def __init__(
        self,
        cache: McpToolCache,
        *,
        clock: Clock,
        timeout_s: float,
        first_wait_s: float = 2.0,
        connect_timeout_s: float = 30.0,
        poll_s: float = 0.5,
        metrics: Metrics | None = None,
    ) -> None:
        self.cache = cache
        self._metrics = metrics
        self._clock = clock
        self._timeout_s = timeout_s
        self._first_wait_s = first_wait_s
        self._connect_timeout_s = connect_timeout_s
        self._poll_s = poll_s

    async def discover(self, ctx: ToolContext) -> list[McpTool]:
        """The MCP tools the model gets this turn (``[]`` on any failure; never raises
        except on cancellation)."""
        return list((await self.discover_listing(ctx)).tools)

    async def discover_listing(self, ctx: ToolContext) -> Discovery:
        """Like :meth:`discover`, with the servers still connecting and those that failed.
        The agent waits at most ``first_wait_s`` for its servers."""
        conns = ctx.conns
        if conns.binding.workspace_id is None:
            return Discovery(answered=False)
        agent = conns.cached_agent
        if (
            conns.cached_conn is not None
            and agent is not None
            and agent.workspace_id == conns.binding.workspace_id
        ):
            entry = self.cache.entry(ctx.chat_id, agent.id)
            if entry is not None and entry.settled:
                return Discovery(tools=entry.tools)
            if entry is not None:  # known agent, unsettled: ask it again, no gate needed
                return await self._bounded(ctx, self._list(ctx, agent.id, self._first_wait_s))
        return await self._bounded(ctx, self._slow(ctx))

    async def _bounded(self, ctx: ToolContext, aw: Awaitable[Discovery]) -> Discovery:
        if self._metrics is not None:
            aw = self._metrics.mcp_discovery(aw)
        try:
            return await within(self._clock, self._timeout_s, aw)
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
        return Discovery(answered=False)

    async def _slow(self, ctx: ToolContext) -> Discovery:
        try:
            agent_id = await ctx.conns.gate_agent_id()
        except (NoRunningAgent, NoWorkspace):
            self.cache.invalidate(ctx.chat_id)  # no running agent: skip quietly, never dial
            return Discovery()
        parent = ctx.chat.parent_chat_id
        if parent is not None:
            seeded = self.cache.entry(parent, agent_id)
            if seeded is not None and seeded.settled:  # a subagent on its parent's agent
                self.cache.put(ctx.chat_id, agent_id, seeded.tools)
                return Discovery(tools=seeded.tools)
        return await self._list(ctx, agent_id, self._first_wait_s)

    async def _list(self, ctx: ToolContext, agent_id: uuid.UUID, wait_s: float) -> Discovery:
        """One listing from the agent (which waits at most ``wait_s`` for its servers),
        cached for the agent that answered."""
        conns = ctx.conns
        timeout = wait_s + self._timeout_s
        listing = await ctx.with_agent(lambda c: c.mcp_tools(timeout=timeout, wait=wait_s))
        used = conns.cached_agent.id if conns.cached_agent is not None else agent_id
        found = Discovery.of(listing)
        for server in found.failed:
            log.info("chat %s: MCP server %s: %s", ctx.chat_id, server.name, server.error)
        self.cache.put(ctx.chat_id, used, found.tools, settled=found.settled)
        return found

    async def follow(
        self, ctx: ToolContext, on_update: Callable[[Discovery], Awaitable[None]]
    ) -> None:
        """While servers are still connecting, list again (every ``poll_s``, until the
        connect bound has passed) and hand each changed listing to ``on_update``: late
        tools join the next model step. Failures end the watch quietly."""
        agent = ctx.conns.cached_agent
        if agent is None:
            return
        deadline = self._clock.monotonic() + self._connect_timeout_s + 2 * self._poll_s
        last: Discovery | None = None
        while self._clock.monotonic() < deadline:
            await self._clock.sleep(self._poll_s)
            try:
                found = await within(
                    self._clock, self._timeout_s, self._list(ctx, agent.id, self._poll_s)
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.info("chat %s: watching MCP servers stopped: %s", ctx.chat_id, err)
                return
            if found != last:
                await on_update(found)
                last = found
            if not found.pending:
                return


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
            cache.unsettle(ctx.chat_id)  # the server may have gone: re-list next turn
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
