"""The chat's one toolset (chatd/turn/agents.py): its own tools listed once per retry
budget, the turn's workspace MCP tools merged at every step and run by their own toolset."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic_ai import Agent, Tool
from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from tether.chatd.turn.agents import ChatToolset


def _tool(name: str, calls: list[str], **kw: Any) -> Tool[None]:
    async def run() -> str:
        calls.append(name)
        return f"{name} ran"

    return Tool(run, name=name, **kw)


def _model(plan: list[str | None], seen: list[set[str]]) -> FunctionModel:
    """Calls the tools in ``plan`` one per step (None: answers ``done``)."""

    def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        seen.append({t.name for t in info.function_tools})
        step = plan.pop(0)
        if step is None:
            return pai.ModelResponse(parts=[pai.TextPart("done")])
        return pai.ModelResponse(parts=[pai.ToolCallPart(tool_name=step, args={})])

    return FunctionModel(respond)


async def test_mcp_tools_appear_mid_run_and_run_through_their_own_toolset() -> None:
    calls: list[str] = []
    current = FunctionToolset[None]()

    async def mine_then_prime() -> str:
        nonlocal current
        calls.append("mine")
        # a lifecycle tool bound a workspace: its MCP tools appear from the next step on
        current = FunctionToolset([_tool("echo__echo", calls)])
        return "ok"

    toolset = ChatToolset([Tool(mine_then_prime, name="mine")], lambda: current)
    seen: list[set[str]] = []
    agent: Agent[None, str] = Agent(
        _model(["mine", "echo__echo", None], seen), toolsets=[toolset], retries=3
    )
    result = await agent.run("go")
    assert result.output == "done"
    assert seen == [{"mine"}, {"mine", "echo__echo"}, {"mine", "echo__echo"}]
    assert calls == ["mine", "echo__echo"]


async def test_an_mcp_tool_never_shadows_a_chat_tool() -> None:
    ours: list[str] = []
    theirs: list[str] = []
    current = FunctionToolset([_tool("mine", theirs)])  # same name: the chat's tool wins
    toolset = ChatToolset([_tool("mine", ours)], lambda: current)
    agent: Agent[None, str] = Agent(_model(["mine", None], []), toolsets=[toolset])
    await agent.run("go")
    assert ours == ["mine"] and theirs == []


async def test_the_listing_is_kept_unless_a_tool_prepares_itself() -> None:
    prepared: list[str] = []

    async def prepare(ctx: Any, tool_def: Any) -> Any:
        prepared.append(tool_def.name)
        return tool_def

    empty = FunctionToolset[None]()
    static = ChatToolset([_tool("a", [])], lambda: empty)
    dynamic = ChatToolset([_tool("b", [], prepare=prepare)], lambda: empty)
    for toolset in (static, dynamic):
        agent: Agent[None, str] = Agent(
            _model(["a" if toolset is static else "b", None], []), toolsets=[toolset]
        )
        await agent.run("go")
    assert static._listed is not None and set(static._listed[1]) == {"a"}
    assert dynamic._listed is None and len(prepared) >= 2  # prepared at every step


async def test_the_kept_listing_sends_what_pydantic_ai_would() -> None:
    """Return schemas are cleared once in the kept listing, as every request clears them."""
    sent: list[list[Any]] = []

    def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        # toolset_id names the agent's own toolset (telemetry only; no adapter sends it)
        sent.append([replace(t, toolset_id=None) for t in info.function_tools])
        return pai.ModelResponse(parts=[pai.TextPart("done")])

    empty = FunctionToolset[None]()
    mine = _tool("mine", [])
    plain: Agent[None, str] = Agent(FunctionModel(respond), tools=[_tool("mine", [])])
    chat: Agent[None, str] = Agent(
        FunctionModel(respond), toolsets=[ChatToolset([mine], lambda: empty)]
    )
    await plain.run("go")
    await chat.run("go")
    await chat.run("again")
    assert sent[0] == sent[1] == sent[2]
    assert sent[1][0].return_schema is None
