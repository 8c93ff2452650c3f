"""The chat's one toolset (chatd/turn/agents.py): its own tools listed once per retry
budget, the turn's workspace MCP tools merged at every step and run by their own toolset;
given to the agent through the ChatTools capability, beside no other toolset."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic_ai import Agent, Tool
from pydantic_ai import messages as pai
from pydantic_ai.capabilities import ToolSearch
from pydantic_ai.exceptions import ModelRetry
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from tether.chatd.turn.agents import ChatTools, ChatToolset


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


def _chat_agent(model: FunctionModel, toolset: ChatToolset) -> Agent[None, str]:
    """As ``turn_agent`` builds it (chatd/turn/agents.py)."""
    return Agent(model, retries=3, capabilities=[ChatTools(toolset=toolset)])


@pytest.mark.parametrize("through", ["toolsets", "capability"])
async def test_mcp_tools_appear_mid_run_and_run_through_their_own_toolset(through: str) -> None:
    """Given to the agent as a toolset, or through ``ChatTools`` as the chat's agent gets
    it (chatd/turn/agents.py): the same steps either way."""
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
    model = _model(["mine", "echo__echo", None], seen)
    agent: Agent[None, str] = (
        Agent(model, toolsets=[toolset], retries=3)
        if through == "toolsets"
        else _chat_agent(model, toolset)
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


async def test_through_the_capability_the_model_gets_what_pydantic_ai_would_send() -> None:
    """The same tool definitions as the tools given to the agent directly, every request;
    pydantic-ai sees one toolset (its own, empty), so it gathers nothing in task groups."""
    sent: list[list[Any]] = []

    def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        sent.append([replace(t, toolset_id=None) for t in info.function_tools])
        return pai.ModelResponse(parts=[pai.TextPart("done")])

    empty = FunctionToolset[None]()
    plain: Agent[None, str] = Agent(FunctionModel(respond), tools=[_tool("mine", [])])
    chat = _chat_agent(FunctionModel(respond), ChatToolset([_tool("mine", [])], lambda: empty))
    await plain.run("go")
    await chat.run("go")
    await chat.run("again")
    assert sent[0] == sent[1] == sent[2]
    assert len(chat.toolsets) == 1 and not chat.toolsets[0].tools  # type: ignore[attr-defined]


async def test_through_the_capability_a_failing_tool_is_retried_as_before() -> None:
    """A tool's ModelRetry reaches the model and counts against its retries exactly as
    with the toolset given to the agent directly (same calls, same history)."""

    def run_with(make: Any) -> Any:
        attempts: list[int] = []

        async def flaky() -> str:
            attempts.append(1)
            if len(attempts) < 3:
                raise ModelRetry("again")
            return "fine"

        def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
            done = any(
                isinstance(p, pai.ToolReturnPart) and p.content == "fine"
                for m in messages
                for p in m.parts
            )
            if done:
                return pai.ModelResponse(parts=[pai.TextPart("done")])
            return pai.ModelResponse(parts=[pai.ToolCallPart(tool_name="flaky", args={})])

        empty = FunctionToolset[None]()
        agent = make(FunctionModel(respond), ChatToolset([Tool(flaky)], lambda: empty))
        return attempts, agent

    direct_attempts, direct = run_with(
        lambda model, toolset: Agent(model, retries=3, toolsets=[toolset])
    )
    cap_attempts, cap = run_with(_chat_agent)
    direct_run = await direct.run("go")
    cap_run = await cap.run("go")
    assert cap_run.output == direct_run.output == "done"
    assert len(cap_attempts) == len(direct_attempts) == 3

    def shape(run: Any) -> list[list[str]]:
        return [[type(p).__name__ for p in m.parts] for m in run.all_messages()]

    assert shape(cap_run) == shape(direct_run)


def test_the_chat_tools_are_the_agents_one_tool_search() -> None:
    """pydantic-ai gives an agent without a ``ToolSearch`` one of its own; ``ChatTools`` is
    the agent's, so the agent holds one capability fewer (each costs a run-context copy per
    hook, an event-stream wrapper per node and a task per run start, issue #12)."""
    agent = _chat_agent(_model([None], []), ChatToolset([], FunctionToolset))
    capabilities = agent.root_capability.capabilities
    [search] = [c for c in capabilities if isinstance(c, ToolSearch)]
    assert isinstance(search, ChatTools)
    assert len(capabilities) == 2  # and pydantic-ai's pending-message drain


async def test_through_the_capability_tool_search_still_hides_a_deferred_tool() -> None:
    """Tool search still wraps the chat's tools: a tool marked ``defer_loading`` is held
    back from the model, which gets the tool-search tool instead, as with pydantic-ai's own
    ``ToolSearch`` (tether marks none of its tools so; this is pydantic-ai's behaviour kept)."""
    calls: list[str] = []
    seen: list[AgentInfo] = []
    toolset = ChatToolset(
        [_tool("mine", calls), _tool("rare_weather", calls, defer_loading=True)],
        FunctionToolset,
    )

    def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        seen.append(info)
        return pai.ModelResponse(parts=[pai.TextPart("done")])

    result = await _chat_agent(FunctionModel(respond), toolset).run("go")
    assert result.output == "done"
    [info] = seen
    assert {t.name for t in info.function_tools} == {"mine"}
    native = info.model_request_parameters.native_tools
    assert [t.kind for t in native] == ["tool_search"]
