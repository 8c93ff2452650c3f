"""The turn runner: one chat turn from the model's resolution to the final status.

The worker cancels the turn task to stop it and says why in :class:`TurnControl`:

* ``interrupt`` — the partial reply streamed so far is persisted with a note, unanswered tool
  calls get ``interrupted`` results, and the turn finishes normally (a queued message is
  promoted by ``finish_turn``);
* ``shutdown`` / ``lost`` — nothing more is written; the chat is released by the worker
  (shutdown) or already belongs to someone else (lost, WK-2).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pydantic_ai.models import Model

from tether.chatd import history as history_mod
from tether.chatd.autotitle import AutoTitler
from tether.chatd.compaction import LongChat
from tether.chatd.context import ContextBudget
from tether.chatd.mcptools import McpDiscovery, McpToolCache
from tether.chatd.mcpturn import McpTurn
from tether.chatd.tools.base import ChatdDeps, ChatState
from tether.chatd.turn.agents import ChatAgents, running, turn_agent
from tether.chatd.turn.attempts import Outcome, run_attempts
from tether.chatd.turn.events import status_data
from tether.chatd.turn.finish import finish_turn, flush_usage
from tether.chatd.turn.prepare import Instructions, TurnSetup, TurnWorkspace
from tether.chatd.turn.recorder import TurnRecorder
from tether.chatd.turn.steps import run_once
from tether.domain.chat import Chat
from tether.errors import TetherError
from tether.llm.chatmodel import ModelFor, resolve_chat_model

log = logging.getLogger(__name__)


@dataclass
class TurnControl:
    """Why the worker cancelled the turn (set before ``task.cancel()``)."""

    reason: str | None = None  # interrupt | shutdown | lost
    finishing: bool = False  # set once the turn writes its final status: interrupts wait


class TurnRunner:
    """Runs turns. ``model_for(chat)`` gives the pydantic-ai model. ``instructions`` reads
    the workspace's instruction files into the system prompt (without it the block is
    rebuilt from persisted context-file parts); ``mcp`` discovers the workspace MCP tools.
    Both run in parallel with loading the history, before the first model call."""

    def __init__(
        self,
        deps: ChatdDeps,
        *,
        model_for: ModelFor,
        instructions: Instructions | None = None,
        mcp: McpDiscovery | None = None,
        longchat: LongChat | None = None,
        titles: AutoTitler | None = None,
    ) -> None:
        self._deps = deps
        self._long = longchat
        self.titles = titles  # automatic titles after a first turn (chatd/autotitle.py)
        self._model_for = model_for
        self._mcp = mcp
        self._setup = TurnSetup(deps, longchat=longchat, instructions=instructions, mcp=mcp)
        self._agents = ChatAgents()  # the tools and agents its chats share (turn/agents.py)

    @property
    def mcp_cache(self) -> McpToolCache | None:
        """The process-wide workspace MCP tool cache (the worker evicts on build events)."""
        return self._mcp.cache if self._mcp is not None else None

    def forget_history(self, chat_id: Any = None) -> None:
        """Drop a chat's cached history (all chats with None): an edit elsewhere."""
        if self._long is not None:
            self._long.cache.forget(chat_id)

    async def run(self, chat: Chat, state: ChatState, worker_id: Any, control: TurnControl) -> None:
        deps = self._deps
        deps.hub.publish(chat.id, "status", status_data(chat))
        try:
            model = await resolve_chat_model(self._model_for, chat)
        except Exception as exc:  # a bad model spec or a missing key must not strand the chat
            log.warning("chat %s: cannot build the model: %s", chat.id, exc)
            code = exc.code if isinstance(exc, TetherError) else "model_error"
            control.finishing = True
            await finish_turn(deps, chat, worker_id, f"cannot use the model: {exc}", code)
            return
        recorder = TurnRecorder(deps, chat.id, chat.model or model.model_name)
        error: str | None = None
        error_code: str | None = None
        try:
            error, error_code = await self._attempts(chat, state, model, recorder)
        except asyncio.CancelledError:
            if control.reason == "shutdown":  # §7: the history stays well-formed
                await history_mod.shielded(recorder.close_calls(history_mod.LOST_ON_SHUTDOWN))
            await history_mod.shielded(flush_usage(self._long, recorder))
            if control.reason != "interrupt":
                state.clean_through = 0  # the next turn here scans the whole history
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await asyncio.shield(recorder.interrupted())
        await flush_usage(self._long, recorder)
        control.finishing = True
        clean = await finish_turn(deps, chat, worker_id, error, error_code)
        clean = clean and not recorder.call_ids
        state.clean_through = max(state.clean_through, recorder.last_seq) if clean else 0
        if error is None and self.titles is not None:
            self.titles.after_turn(chat, model)  # in the background, after the turn

    async def _attempts(
        self, chat: Chat, state: ChatState, model: Model, recorder: TurnRecorder
    ) -> Outcome:
        """The turn's tools and agent, then its attempts (attempts.py)."""
        deps = self._deps
        setup = self._setup
        budget = await self._long.budget(model, chat) if self._long is not None else None
        cached = turn_agent(deps, chat, state, self._agents)  # shared by the worker's chats
        ctx, turn_ws, taken, agent = cached.ctx, cached.turn_ws, cached.taken, cached.agent
        if budget is not None:  # the agent's budget hook measures this turn's requests
            cached.context = ContextBudget(budget, turn_ws.budget, deps.settings.context_keep_steps)
        if self._mcp is not None and not chat.plan_mode:  # PL-9: no MCP discovery
            turn_ws.mcp = McpTurn(
                self._mcp, ctx, lambda specs: setup.set_mcp(ctx, turn_ws, specs, taken)
            )

        async def on_ready() -> None:
            await setup.workspace_ready(ctx, turn_ws, taken)

        ctx.on_workspace_ready = on_ready

        async def once() -> None:
            await run_once(setup, ctx, turn_ws, taken, agent, recorder, model)

        try:
            with running(cached):  # what the shared tools act on (turn/agents.py)
                return await run_attempts(deps, self._long, chat, model, budget, recorder, once)
        finally:
            # the kept agent outlives the turn: it must not keep the turn's history view,
            # toolset and hooks alive until the chat goes idle (a copy of every idle chat's
            # history when the history cache does not hold it)
            cached.turn_ws = TurnWorkspace()
            cached.context = None
            ctx.on_workspace_ready = None
            turn_ws.mcp = None  # its apply hook holds turn_ws: a cycle left for a full collection
