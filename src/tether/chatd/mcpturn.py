"""Telling the model and the user that a workspace MCP server failed — once per failure.

A failed server (it timed out, crashed, or its ``.mcp.json`` entry is broken) is never a
turn failure: the turn runs without its tools. The first time a chat sees the failure:

* the model gets a ``<workspace-mcp>`` block in the system prompt for the rest of that turn
  (later turns do not repeat it: the missing tools are simply absent);
* the chat gets a persisted ``system`` message with ``visibility="user"`` (the transcript's
  status detail; never sent to the model) and a ``workspace_mcp`` stream event with every
  server's status.

The server is reported again only after it was seen connecting or working in between
(:meth:`McpToolCache.unreported`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from tether.agent.schemas import McpServerStatus, McpTool
from tether.chatd.mcptools import Discovery, McpDiscovery, McpToolCache
from tether.chatd.tools.base import ToolContext

log = logging.getLogger(__name__)

STREAM_EVENT = "workspace_mcp"


def model_notice(failed: Sequence[McpServerStatus]) -> str:
    """The system-prompt block that tells the model which servers' tools are missing."""
    lines = "\n".join(f"- {s.name}: {s.error or 'failed'}" for s in failed)
    return (
        "<workspace-mcp>\nThese MCP servers of the workspace (.mcp.json) are unavailable, so "
        f"their tools are missing:\n{lines}\nThey are retried in the background. If the user "
        "needs them, say so; fixing .mcp.json makes the workspace retry at once.\n"
        "</workspace-mcp>"
    )


def user_notice(failed: Sequence[McpServerStatus]) -> str:
    names = ", ".join(f"{s.name} ({s.error or 'failed'})" for s in failed)
    return f"Workspace MCP servers unavailable, their tools are missing: {names}"


async def report_failures(ctx: ToolContext, cache: McpToolCache, found: Discovery) -> str:
    """Report the failures of ``found`` that are new to the chat; returns the model notice
    (``""`` when there is nothing new). Best effort: a store error is logged, never raised."""
    fresh = cache.unreported(ctx.chat_id, found)
    if not fresh:
        return ""
    deps = ctx.deps
    deps.hub.publish(
        ctx.chat_id,
        STREAM_EVENT,
        {
            "failed": [s.model_dump(mode="json", exclude_none=True) for s in found.failed],
            "pending": list(found.pending),
        },
    )
    try:
        stored = await deps.chats.append_message(
            ctx.chat_id,
            role="system",
            parts=[{"type": "text", "text": user_notice(fresh)}],
            visibility="user",
        )
        deps.hub.publish_message(stored)
    except Exception as exc:
        log.warning("chat %s: cannot record the MCP failure notice: %s", ctx.chat_id, exc)
    return model_notice(fresh)


class McpTurn:
    """One turn's workspace MCP tools: discovery (the first model call waits at most the
    agent's short bound), the failure report, and a watcher that hands tools of servers
    still connecting to ``apply`` so they join the next model step. :meth:`close` stops
    the watcher (the turn's end)."""

    def __init__(
        self,
        discovery: McpDiscovery,
        ctx: ToolContext,
        apply: Callable[[list[McpTool]], None],
    ) -> None:
        self._discovery = discovery
        self._ctx = ctx
        self._apply = apply
        self.notice = ""  # the model notice of failures first seen in this turn
        self._watch: asyncio.Task[None] | None = None

    async def discover(self) -> list[McpTool]:
        found = await self._discovery.discover_listing(self._ctx)
        await self._report(found)
        if found.pending and (self._watch is None or self._watch.done()):
            self._watch = asyncio.create_task(
                self._discovery.follow(self._ctx, self._update),
                name=f"mcp-watch-{self._ctx.chat_id}",
            )
        return list(found.tools)

    async def _update(self, found: Discovery) -> None:
        self._apply(list(found.tools))
        await self._report(found)

    async def _report(self, found: Discovery) -> None:
        notice = await report_failures(self._ctx, self._discovery.cache, found)
        if notice:
            self.notice = f"{self.notice}\n\n{notice}" if self.notice else notice

    async def close(self) -> None:
        task, self._watch = self._watch, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
