"""One chat turn: history → pydantic-ai step loop with the chat's tools → streamed parts →
persisted messages → final status (docs/behaviour.md §3).

Persistence is per step: each model response is stored as soon as its stream ends, and the
tool results of a step as soon as the tools have run, so a crash loses at most the step in
progress. Provider failures (HTTP 429/5xx) are retried with exponential backoff by
re-running from the persisted history (nothing is repeated), each attempt announced with a
``retry`` event; then the chat goes to ``error`` with ``provider_error``. Tool failures are
results (``tools/base.py``), never turn failures.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic_ai import Agent
from pydantic_ai import messages as pai
from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError
from pydantic_ai.models import Model
from pydantic_ai.tools import RunContext
from pydantic_ai.toolsets import FunctionToolset

from tether.agent.schemas import McpTool
from tether.channels import CHATS, chat_channel
from tether.chatd import history as history_mod
from tether.chatd import messages as cm
from tether.chatd.autotitle import AutoTitler
from tether.chatd.compaction import LongChat, View
from tether.chatd.context import (
    Calibration,
    ContextBudget,
    NeedsCompaction,
    TurnBudget,
    is_context_overflow,
    overflow_error,
)
from tether.chatd.historycache import stored_to_chat
from tether.chatd.mcptools import McpDiscovery, McpToolCache, mcp_tools
from tether.chatd.mcpturn import McpTurn
from tether.chatd.prompts import TurnPrompt
from tether.chatd.tools import build_tools
from tether.chatd.tools.base import ChatdDeps, ChatState, ToolContext
from tether.db.chatconfig import ChatConfig
from tether.db.compactions import UsageRow
from tether.domain.chat import Chat
from tether.errors import Conflict, InvalidInput, TetherError
from tether.llm.budget import Budget
from tether.llm.chatmodel import ModelFor, resolve_chat_model
from tether.llm.provider import retry_policy, typed_provider_error

log = logging.getLogger(__name__)

INTERRUPTED_NOTE = "\n\n[interrupted by the user]"
MAX_COMPACTIONS_PER_TURN = 2  # then the turn ends with context_overflow


class Instructions(Protocol):
    """The instruction-files step (``tether.chatd.instructions.InstructionFiles``)."""

    async def block(self, ctx: ToolContext, history: Sequence[cm.ChatMessage]) -> str: ...


@dataclass
class _TurnWorkspace:
    """What the pre-LLM setup found for this turn; replaced mid-turn when a lifecycle tool
    binds a ready workspace (the instructions and toolset are re-read every step)."""

    block: str = ""
    toolset: FunctionToolset[None] = field(default_factory=FunctionToolset)
    mcp_names: tuple[str, ...] = ()
    mcp: McpTurn | None = None  # late MCP tools and the failure notice (mcpturn.py)
    prompt: TurnPrompt | None = None  # admin prompts and plan mode (prompts.py)
    view: View | None = None  # the history in force (compaction.py)
    budget: TurnBudget = field(default_factory=lambda: TurnBudget(Calibration()))


@dataclass
class TurnControl:
    """Why the worker cancelled the turn (set before ``task.cancel()``)."""

    reason: str | None = None  # interrupt | shutdown | lost
    finishing: bool = False  # set once the turn writes its final status: interrupts wait


class _StepLimit(Exception):
    pass


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelHTTPError) and (exc.status_code == 429 or exc.status_code >= 500)


def _status_data(chat: Chat) -> dict[str, Any]:
    """The payload of a ``status`` stream event (same shape as the API's)."""
    return {
        "status": chat.status.value,
        "last_error": chat.last_error,
        "last_error_code": chat.last_error_code,
    }


def repair_dangling_calls(history: list[cm.ChatMessage]) -> list[cm.ChatMessage]:
    """The request-side normalisation of :func:`tether.chatd.history.well_formed`."""
    return history_mod.well_formed(history)


@dataclass
class _Recorder:
    """Persists one turn's messages step by step and publishes them."""

    deps: ChatdDeps
    chat_id: Any
    model_name: str | None
    call_ids: dict[str, str] = field(default_factory=dict)  # unanswered id → tool name
    persisted: set[int] = field(default_factory=set)
    partial: list[str] = field(default_factory=list)
    steps_done: int = 0
    usage: list[UsageRow] = field(default_factory=list)  # not stored yet (flush_usage)
    last_seq: int = 0  # of the last message this turn stored

    async def save(self, msg: cm.ChatMessage) -> None:
        stored = await self.deps.chats.append_message(
            self.chat_id,
            role=msg.role,
            parts=cm.dump_parts(msg.parts),
            visibility=msg.visibility,
            model=msg.model if msg.role == "assistant" else None,
        )
        self.last_seq = max(self.last_seq, stored.seq)
        self.deps.hub.publish_message(stored)

    async def response(self, response: pai.ModelResponse) -> None:
        if id(response) in self.persisted:
            return
        self.persisted.add(id(response))
        for msg in cm.from_model_messages([response]):
            msg.model = msg.model or self.model_name
            await self.save(msg)
            for part in msg.parts:
                if isinstance(part, cm.ToolCallPart):
                    self.call_ids[part.tool_call_id] = part.tool_name
        self.partial.clear()
        self.steps_done += 1

    async def tool_results(self, request: pai.ModelRequest) -> None:
        """Persist the tool results of a step (the request that carries them back)."""
        if id(request) in self.persisted:
            return
        parts = [
            p
            for p in request.parts
            if isinstance(p, pai.ToolReturnPart | pai.RetryPromptPart)
            and p.tool_call_id in self.call_ids
        ]
        if not parts:
            return
        self.persisted.add(id(request))
        for msg in cm.from_model_messages([pai.ModelRequest(parts=parts)]):
            await self.save(msg)
        for p in parts:
            self.call_ids.pop(p.tool_call_id, None)

    async def interrupted(self) -> None:
        """Persist what the user saw streaming, and close unanswered tool calls."""
        text = "".join(self.partial)
        if text:
            await self.save(
                cm.ChatMessage(
                    role="assistant",
                    parts=[cm.TextPart(text=text + INTERRUPTED_NOTE)],
                    model=self.model_name,
                )
            )
            self.partial.clear()
        await self.close_calls(history_mod.BY_USER)

    async def close_calls(self, why: str) -> None:
        """Store ``interrupted: {why}`` results for this turn's unanswered tool calls."""
        if self.call_ids:
            calls = [cm.ToolCallPart(tool_call_id=c, tool_name=n) for c, n in self.call_ids.items()]
            stored = await history_mod.close_dangling_calls(
                self.deps.chats, self.chat_id, calls, why
            )
            if stored is not None:
                self.deps.hub.publish_message(stored)
            self.call_ids.clear()


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
        self._instructions = instructions
        self._mcp = mcp

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
        hub = deps.hub
        hub.publish(chat.id, "status", _status_data(chat))
        try:
            model = await resolve_chat_model(self._model_for, chat)
        except Exception as exc:  # a bad model spec or a missing key must not strand the chat
            log.warning("chat %s: cannot build the model: %s", chat.id, exc)
            code = exc.code if isinstance(exc, TetherError) else "model_error"
            control.finishing = True
            await self._finish(chat, worker_id, f"cannot use the model: {exc}", code)
            return
        recorder = _Recorder(deps, chat.id, chat.model or model.model_name)
        error: str | None = None
        error_code: str | None = None
        try:
            error, error_code = await self._attempts(chat, state, model, recorder)
        except asyncio.CancelledError:
            if control.reason == "shutdown":  # §7: the history stays well-formed
                await history_mod.shielded(recorder.close_calls(history_mod.LOST_ON_SHUTDOWN))
            await history_mod.shielded(self._flush_usage(recorder))
            if control.reason != "interrupt":
                state.clean_through = 0  # the next turn here scans the whole history
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await asyncio.shield(recorder.interrupted())
        await self._flush_usage(recorder)
        control.finishing = True
        clean = await self._finish(chat, worker_id, error, error_code) and not recorder.call_ids
        state.clean_through = max(state.clean_through, recorder.last_seq) if clean else 0
        if error is None and self.titles is not None:
            self.titles.after_turn(chat, model)  # in the background, after the turn

    async def _flush_usage(self, recorder: _Recorder) -> None:
        """One statement for the usage of all the turn's model requests (was one each)."""
        rows, recorder.usage = recorder.usage, []
        if rows and self._long is not None:
            try:
                await self._long.record_usages(rows)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # accounting must never fail the turn
                log.warning("chat %s: storing usage failed: %s", recorder.chat_id, err)

    async def _finish(
        self, chat: Chat, worker_id: Any, error: str | None, error_code: str | None
    ) -> bool:
        """End the turn (``finish_turn``) and publish it; False when the chat is no longer
        this worker's."""
        deps = self._deps
        deps.metrics.turn_outcome(error_code)
        try:
            final, promoted = await deps.chats.finish_turn(
                chat.id, worker_id, error=error, error_code=error_code
            )
        except Conflict:
            log.info("chat %s: no longer ours at the end of the turn; nothing finished", chat.id)
            return False
        if error is not None:
            deps.hub.publish(chat.id, "error", {"message": error, "code": error_code})
        if promoted is not None:
            deps.hub.publish_message(promoted)
            queued = await deps.chats.queued(chat.id)
            deps.hub.publish(
                chat.id,
                "queue_update",
                {
                    "queued": [
                        {"id": str(q.id), "parts": q.parts, "created_at": q.created_at.isoformat()}
                        for q in queued
                    ]
                },
            )
        deps.hub.publish(chat.id, "status", _status_data(final))
        await deps.bus.publish(
            chat_channel(chat.id), {"type": "status", "status": final.status.value}
        )
        if promoted is not None:
            await deps.bus.publish(CHATS, {"chat_id": str(chat.id)})
        return True

    async def _attempts(
        self, chat: Chat, state: ChatState, model: Model, recorder: _Recorder
    ) -> tuple[str | None, str | None]:
        deps = self._deps
        settings = deps.settings
        ctx = ToolContext(deps, chat, state)
        turn_ws = _TurnWorkspace()
        tools = build_tools(ctx)
        taken = {t.name for t in tools}
        if self._mcp is not None and not chat.plan_mode:  # PL-9: no MCP discovery
            turn_ws.mcp = McpTurn(
                self._mcp, ctx, lambda specs: self._set_mcp(ctx, turn_ws, specs, taken)
            )

        async def on_ready() -> None:
            await self._workspace_ready(ctx, turn_ws, taken)

        def workspace_mcp(_: RunContext[None]) -> FunctionToolset[None]:
            return turn_ws.toolset  # evaluated every step: tools primed mid-turn appear

        ctx.on_workspace_ready = on_ready
        budget = await self._long.budget(model, chat) if self._long is not None else None
        capabilities = (
            [ContextBudget(budget, turn_ws.budget, settings.context_keep_steps)] if budget else []
        )
        agent: Agent[None, str] = Agent(
            model, tools=tools, toolsets=[workspace_mcp], retries=3, capabilities=capabilities
        )
        failures = 0
        compactions = 0
        while True:
            steps_before = recorder.steps_done
            try:
                await self._run_once(ctx, turn_ws, taken, agent, recorder)
                return None, None
            except _StepLimit:
                return (
                    f"the turn stopped after {settings.max_steps_per_turn} model steps",
                    "step_limit",
                )
            except NeedsCompaction as exc:
                compactions += 1
                if (done := await self._compact(chat, model, budget, compactions, exc)) is not None:
                    return done
            except ModelHTTPError as exc:
                if self._long is not None and is_context_overflow(exc):
                    compactions += 1
                    if (
                        done := await self._compact(chat, model, budget, compactions, exc)
                    ) is not None:
                        return done
                    continue
                if recorder.steps_done > steps_before:
                    failures = 0  # progress was made: the budget is per stuck step
                max_retries, retry_base_s = retry_policy(
                    model, settings.provider_max_retries, settings.provider_retry_base_s
                )
                if not _retryable(exc) or failures >= max_retries:
                    return (
                        f"the model provider failed (HTTP {exc.status_code}): {exc.message}",
                        "provider_error",
                    )
                failures += 1
                delay = retry_base_s * 2 ** (failures - 1)
                deps.hub.publish(
                    chat.id,
                    "retry",
                    {
                        "attempt": failures,
                        "max_attempts": max_retries,
                        "delay_s": delay,
                        "error": f"HTTP {exc.status_code}",
                    },
                )
                recorder.partial.clear()
                await deps.clock.sleep(delay)
            except ModelAPIError as exc:  # e.g. pydantic-ai's own deadlines, outside the model
                typed = typed_provider_error(exc, model)
                if isinstance(typed, TetherError):
                    return typed.message, typed.code
                return str(exc), "provider_error"
            except TetherError as exc:
                return exc.message, exc.code
            except Exception as exc:
                log.exception("chat %s: turn failed", chat.id)
                return f"{type(exc).__name__}: {exc}", "internal"

    async def _compact(
        self, chat: Chat, model: Model, budget: Budget | None, n: int, cause: Exception
    ) -> tuple[str, str] | None:
        """One compaction for an over-budget request (then the turn runs again from the
        persisted history), or the ``context_overflow`` outcome."""
        detail = cause.message if isinstance(cause, ModelHTTPError) else str(cause)
        if self._long is None or n > MAX_COMPACTIONS_PER_TURN:
            err = overflow_error(f"{detail} (after {n - 1} compactions)")
            return f"{err.message}. Remediation: {err.remediation}", err.code
        try:
            tail = cause.tail_budget if isinstance(cause, NeedsCompaction) else None
            reason = "budget" if isinstance(cause, NeedsCompaction) else "overflow"
            await self._long.compact(chat.id, model, reason=reason, tail_budget=tail)
        except InvalidInput:
            err = overflow_error(f"{detail}; the recent messages alone are too large")
            return f"{err.message}. Remediation: {err.remediation}", err.code
        except Conflict:
            pass  # another compaction of this chat won; its history is in force
        return None

    async def _history(
        self, chat: Chat, turn_ws: _TurnWorkspace, known_number: int | None = None
    ) -> list[cm.ChatMessage]:
        if self._long is not None:  # since the last compaction, read incrementally
            turn_ws.view = await self._long.view(chat.id, known_number=known_number)
            turn_ws.budget.calibration = turn_ws.view.calibration
            return turn_ws.view.history
        return [stored_to_chat(m) for m in await self._deps.chats.messages(chat.id)]

    async def _block(self, ctx: ToolContext, history: list[cm.ChatMessage]) -> str:
        if self._instructions is None:
            return cm.workspace_context_from_history(history)
        return await self._instructions.block(ctx, history)

    async def _discover(self, turn_ws: _TurnWorkspace) -> list[McpTool]:
        if turn_ws.mcp is None:
            return []
        return await turn_ws.mcp.discover()

    def _set_mcp(
        self, ctx: ToolContext, turn_ws: _TurnWorkspace, specs: list[McpTool], taken: set[str]
    ) -> None:
        names = tuple(s.name for s in specs)
        if names == turn_ws.mcp_names or self._mcp is None:
            return
        turn_ws.toolset = FunctionToolset(mcp_tools(ctx, specs, self._mcp.cache, taken=taken))
        turn_ws.mcp_names = names

    async def _setup(
        self, ctx: ToolContext, turn_ws: _TurnWorkspace
    ) -> tuple[list[cm.ChatMessage], str, list[McpTool]]:
        """Pre-LLM setup (docs/behaviour.md §3.2): the history and instruction files in
        parallel with MCP discovery; each step is bounded and failure-tolerant on its own."""

        async def prompt() -> tuple[list[cm.ChatMessage], str]:
            known, ctx.state.compaction_number = ctx.state.compaction_number, None  # once
            history = await history_mod.after_takeover(
                self._deps.chats,
                self._deps.hub,
                ctx.chat.id,
                await self._history(ctx.chat, turn_ws, known),
                clean_through=ctx.state.clean_through,
            )
            return history, await self._block(ctx, history)

        async def admin_prompt() -> None:
            turn_ws.prompt = await TurnPrompt.load(self._deps, ctx.chat)

        async with asyncio.TaskGroup() as tg:
            mcp_task = tg.create_task(self._discover(turn_ws))
            prompt_task = tg.create_task(prompt())
            tg.create_task(admin_prompt())
        history, block = prompt_task.result()
        return history, block, mcp_task.result()

    async def _workspace_ready(
        self, ctx: ToolContext, turn_ws: _TurnWorkspace, taken: set[str]
    ) -> None:
        """Mid-turn (PL-18): a lifecycle tool bound a workspace whose agent is ready."""
        history = await self._history(ctx.chat, turn_ws)
        turn_ws.block = await self._block(ctx, history)
        self._set_mcp(ctx, turn_ws, await self._discover(turn_ws), taken)

    async def _run_once(
        self,
        ctx: ToolContext,
        turn_ws: _TurnWorkspace,
        taken: set[str],
        agent: Agent[None, str],
        recorder: _Recorder,
    ) -> None:
        try:
            await self._steps(ctx, turn_ws, taken, agent, recorder)
        finally:
            if turn_ws.mcp is not None:
                await turn_ws.mcp.close()  # late MCP tools are of no use after this run

    async def _steps(
        self,
        ctx: ToolContext,
        turn_ws: _TurnWorkspace,
        taken: set[str],
        agent: Agent[None, str],
        recorder: _Recorder,
    ) -> None:
        deps = self._deps
        chat = ctx.chat
        history, turn_ws.block, specs = await self._setup(ctx, turn_ws)
        self._set_mcp(ctx, turn_ws, specs, taken)

        # async on purpose: pydantic-ai runs a plain ``def`` instruction function in a worker
        # thread (anyio.to_thread) on every evaluation — several thread hops per step for a
        # string join.
        async def instructions() -> str:
            notice = turn_ws.mcp.notice if turn_ws.mcp is not None else ""
            prompt = turn_ws.prompt or TurnPrompt(chat, ChatConfig())
            return prompt.render(turn_ws.block, mcp_notice=notice)  # re-read every step

        repaired = repair_dangling_calls(history)
        view = turn_ws.view
        if self._long is not None and view is not None:
            model_messages = self._long.model_messages(view, repaired)
        else:
            model_messages = cm.to_model_messages(repaired)
        async with agent.iter(
            None, message_history=model_messages, instructions=instructions
        ) as run:
            async for node in run:
                if Agent.is_model_request_node(node):
                    await recorder.tool_results(node.request)
                    if recorder.steps_done >= deps.settings.max_steps_per_turn:
                        raise _StepLimit()
                    async with deps.metrics.model_call(), node.stream(run.ctx) as stream:
                        async for event in stream:
                            self._publish_part(chat, event, recorder)
                    for msg in run.new_messages():
                        if isinstance(msg, pai.ModelResponse):
                            fresh = id(msg) not in recorder.persisted
                            await recorder.response(msg)
                            if fresh and self._long is not None and view is not None:
                                usage = self._long.usage_of(
                                    chat.id,
                                    view,
                                    msg,
                                    turn_ws.budget.last_raw,
                                    recorder.model_name or "",
                                    chat.owner_id,
                                )
                                if usage is not None:  # stored with the turn's end
                                    recorder.usage.append(usage)
                elif Agent.is_call_tools_node(node):
                    async with deps.metrics.tools_step(), node.stream(run.ctx) as tool_stream:
                        async for tool_event in tool_stream:
                            self._publish_tool(chat, tool_event)
            for msg in run.new_messages():
                if isinstance(msg, pai.ModelRequest):
                    await recorder.tool_results(msg)

    def _publish_part(self, chat: Chat, event: Any, recorder: _Recorder) -> None:
        hub = self._deps.hub
        if isinstance(event, pai.PartStartEvent):
            part = event.part
            if isinstance(part, pai.TextPart):
                recorder.partial.append(part.content)
                hub.publish(chat.id, "message_part", {"kind": "text", "delta": part.content})
            elif isinstance(part, pai.ThinkingPart):
                hub.publish(chat.id, "message_part", {"kind": "reasoning", "delta": part.content})
            elif isinstance(part, pai.ToolCallPart):
                hub.publish(
                    chat.id,
                    "message_part",
                    {
                        "kind": "tool-call-start",
                        "tool_call_id": part.tool_call_id,
                        "tool_name": part.tool_name,
                    },
                )
        elif isinstance(event, pai.PartDeltaEvent):
            delta = event.delta
            if isinstance(delta, pai.TextPartDelta):
                recorder.partial.append(delta.content_delta)
                hub.publish(chat.id, "message_part", {"kind": "text", "delta": delta.content_delta})
            elif isinstance(delta, pai.ThinkingPartDelta) and delta.content_delta:
                hub.publish(
                    chat.id, "message_part", {"kind": "reasoning", "delta": delta.content_delta}
                )

    def _publish_tool(self, chat: Chat, event: Any) -> None:
        hub = self._deps.hub
        self._deps.metrics.tool_event(event)
        if isinstance(event, pai.FunctionToolCallEvent):
            hub.publish(
                chat.id,
                "message_part",
                {
                    "kind": "tool-call",
                    "tool_call_id": event.part.tool_call_id,
                    "tool_name": event.part.tool_name,
                    "args": event.part.args_as_dict(),
                },
            )
        elif isinstance(event, pai.FunctionToolResultEvent):
            part = event.part
            parts = cm.from_model_messages([pai.ModelRequest(parts=[part])])
            result = parts[0].parts[0] if parts and parts[0].parts else None
            payload: dict[str, Any] = {"kind": "tool-result", "tool_call_id": part.tool_call_id}
            if isinstance(result, cm.ToolResultPart):
                payload.update(cm.dump_parts([result])[0])
                payload["kind"] = "tool-result"
            hub.publish(chat.id, "message_part", payload)
