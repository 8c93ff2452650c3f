"""The turn's step loop (docs/behaviour.md §3.3): pydantic-ai's graph run over the persisted
history, each model response stored when its stream ends and the tool results of a step
when the tools have run, parts published as they arrive."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai import messages as pai
from pydantic_ai.models import Model

from tether.chatd import history as history_mod
from tether.chatd import messages as cm
from tether.chatd.prompts import TurnPrompt
from tether.chatd.tools.base import ToolContext
from tether.chatd.turn.events import publish_part, publish_tool
from tether.chatd.turn.prepare import TurnSetup, TurnWorkspace
from tether.chatd.turn.recorder import TurnRecorder
from tether.db.chatconfig import ChatConfig


class StepLimit(Exception):
    """The turn reached ``max_steps_per_turn`` model steps."""


async def run_once(
    setup: TurnSetup,
    ctx: ToolContext,
    turn_ws: TurnWorkspace,
    taken: set[str],
    agent: Agent[None, str],
    recorder: TurnRecorder,
    model: Model,
) -> None:
    """One attempt: the setup, then the steps until the model answers without tool calls."""
    try:
        await _steps(setup, ctx, turn_ws, taken, agent, recorder, model)
    finally:
        if turn_ws.mcp is not None:
            await turn_ws.mcp.close()  # late MCP tools are of no use after this run


async def _steps(
    setup: TurnSetup,
    ctx: ToolContext,
    turn_ws: TurnWorkspace,
    taken: set[str],
    agent: Agent[None, str],
    recorder: TurnRecorder,
    model: Model,
) -> None:
    deps = setup.deps
    long = setup.long
    chat = ctx.chat
    history, turn_ws.block, specs = await setup.prepare(ctx, turn_ws)
    setup.set_mcp(ctx, turn_ws, specs, taken)

    # async on purpose: pydantic-ai runs a plain ``def`` instruction function in a worker
    # thread (anyio.to_thread) on every evaluation — several thread hops per step for a
    # string join.
    async def instructions() -> str:
        notice = turn_ws.mcp.notice if turn_ws.mcp is not None else ""
        prompt = turn_ws.prompt or TurnPrompt(chat, ChatConfig())
        return prompt.render(turn_ws.block, mcp_notice=notice)  # re-read every step

    repaired = history_mod.well_formed(history)
    view = turn_ws.view
    if long is not None and view is not None:
        model_messages = long.model_messages(view, repaired)
    else:
        model_messages = cm.to_model_messages(repaired)
    async with agent.iter(
        None,
        message_history=model_messages,
        instructions=instructions,
        model=model,
    ) as run:
        async for node in run:
            if Agent.is_model_request_node(node):
                await recorder.tool_results(node.request)
                if recorder.steps_done >= deps.settings.max_steps_per_turn:
                    raise StepLimit()
                async with deps.metrics.model_call(), node.stream(run.ctx) as stream:
                    async for event in stream:
                        publish_part(deps, chat, event, recorder.partial)
                for msg in run.new_messages():
                    if isinstance(msg, pai.ModelResponse):
                        fresh = id(msg) not in recorder.persisted
                        await recorder.response(msg)
                        if fresh and long is not None and view is not None:
                            usage = long.usage_of(
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
                        publish_tool(deps, chat, tool_event)
        for msg in run.new_messages():
            if isinstance(msg, pai.ModelRequest):
                await recorder.tool_results(msg)
