"""Scripted models driven by a real pydantic-ai Agent with stub tools of the contract names."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    PartDeltaEvent,
    TextPartDelta,
    ToolCallPart,
)

from tether.chatd.messages import render_tool_error
from tether.llm.scripted import (
    DONE_TEXT,
    Call,
    CallMany,
    Say,
    Then,
    demo_model,
    last_result,
    script_model,
    zero_latency_execute_model,
)
from tether.testing.models import ScriptedModel

EXEC_OUTPUT = "hello from tether\n"


@dataclass
class Workspace:
    """Stub tools with the contract's names and arguments; records every call."""

    templates: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": "tpl-1", "name": "python"}]
    )
    fail_create: bool = False
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def agent(self, model: Any) -> Agent[None, str]:
        agent: Agent[None, str] = Agent(model)
        ws = self

        @agent.tool_plain
        def list_templates(query: str | None = None, page: int | None = None) -> dict[str, Any]:
            ws.calls.append(("list_templates", {}))
            return {"templates": ws.templates, "page": 1, "total": len(ws.templates)}

        @agent.tool_plain
        def create_workspace(
            template_id: str, name: str | None = None, parameters: dict[str, str] | None = None
        ) -> dict[str, Any]:
            ws.calls.append(("create_workspace", {"template_id": template_id}))
            if ws.fail_create:
                raise ToolFailed(
                    render_tool_error("quota exceeded", "build_failed", "start_workspace")
                )
            return {"workspace_id": "ws-1", "status": "running"}

        @agent.tool_plain
        def write_file(path: str, content: str) -> dict[str, Any]:
            ws.calls.append(("write_file", {"path": path, "content": content}))
            ws.files[path] = content
            return {"ok": True}

        @agent.tool_plain
        def execute(
            command: str,
            timeout: float | None = None,
            workdir: str | None = None,
            run_in_background: bool = False,
        ) -> dict[str, Any]:
            ws.calls.append(("execute", {"command": command}))
            return {"success": True, "output": EXEC_OUTPUT, "exit_code": 0}

        @agent.tool_plain
        def read_file(
            path: str, offset: int | None = None, limit: int | None = None
        ) -> dict[str, Any]:
            ws.calls.append(("read_file", {"path": path}))
            return {"content": ws.files.get(path, "")}

        return agent


async def test_demo_model_runs_the_whole_plan() -> None:
    ws = Workspace()
    result = await ws.agent(demo_model()).run("show me")
    assert [name for name, _ in ws.calls] == [
        "list_templates",
        "create_workspace",
        "write_file",
        "execute",
        "read_file",
    ]
    assert ws.calls[1][1] == {"template_id": "tpl-1"}  # picked from the list_templates result
    assert ws.files == {"hello.py": "print('hello from tether')\n"}
    assert ws.calls[3][1] == {"command": "python3 hello.py"}
    assert "hello from tether" in result.output
    assert "exit code 0" in result.output


async def test_demo_model_picks_the_first_template_id() -> None:
    ws = Workspace(templates=[{"id": "second-id", "name": "go"}, {"id": "x", "name": "y"}])
    await ws.agent(demo_model()).run("go")
    assert ws.calls[1] == ("create_workspace", {"template_id": "second-id"})


async def test_demo_model_explains_a_tool_error_and_stops() -> None:
    ws = Workspace(fail_create=True)
    result = await ws.agent(demo_model()).run("go")
    assert [name for name, _ in ws.calls] == ["list_templates", "create_workspace"]
    assert "create_workspace" in result.output
    assert "quota exceeded" in result.output
    assert "build_failed" in result.output


async def test_demo_model_without_templates_stops() -> None:
    ws = Workspace(templates=[])
    result = await ws.agent(demo_model()).run("go")
    assert [name for name, _ in ws.calls] == ["list_templates"]
    assert "no templates" in result.output


async def test_demo_model_streams_text_in_pieces() -> None:
    ws = Workspace()
    deltas: list[str] = []
    async with ws.agent(demo_model()).run_stream_events("go") as events:
        async for event in events:
            if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                deltas.append(event.delta.content_delta)
        result = events.result
    assert result is not None
    assert len(deltas) > 5
    assert result.output.endswith("".join(deltas))  # first chunk arrives with the part start
    assert len(ws.calls) == 5


async def test_each_user_turn_replays_the_script() -> None:
    ws = Workspace()
    agent = ws.agent(demo_model())
    first = await agent.run("one")
    second = await agent.run("two", message_history=first.all_messages())
    assert [name for name, _ in ws.calls].count("list_templates") == 2
    assert "hello from tether" in second.output


async def test_zero_latency_execute_model() -> None:
    ws = Workspace()
    agent = ws.agent(zero_latency_execute_model())
    first = await agent.run("1")
    second = await agent.run("2", message_history=first.all_messages())
    assert (first.output, second.output) == ("ok", "ok")
    assert ws.calls == [("execute", {"command": "true"}), ("execute", {"command": "true"})]


async def test_parallel_calls_then_decision_then_done() -> None:
    def decide(messages: list[ModelMessage]) -> Say:
        seen = last_result(messages, "execute")
        assert seen is not None
        return Say(f"saw {seen.value['output'].strip()}")

    model = script_model(
        [
            CallMany([Call("execute", {"command": "a"}), Call("read_file", {"path": "p"})]),
            Then(decide),
        ]
    )
    ws = Workspace()
    agent = ws.agent(model)
    result = await agent.run("go")
    assert result.output == "saw hello from tether"
    responses = [m for m in result.all_messages() if isinstance(m, ModelResponse)]
    first_calls = [p for p in responses[0].parts if isinstance(p, ToolCallPart)]
    assert [c.tool_name for c in first_calls] == ["execute", "read_file"]
    assert len({c.tool_call_id for c in first_calls}) == 2


async def test_exhausted_script_says_done_and_bare_callables_are_steps() -> None:
    model = script_model([lambda messages: Say(f"{len(messages)} messages")])
    agent: Agent[None, str] = Agent(model)
    assert (await agent.run("a")).output == "1 messages"
    streamed = ScriptedModel().build()  # empty script
    async with Agent(streamed).run_stream_events("b") as events:
        async for _ in events:
            pass
    assert events.result is not None and events.result.output == DONE_TEXT


async def test_per_conversation_position_across_turns() -> None:
    model = script_model([Say("first"), Say("second")], per_turn=False)
    agent: Agent[None, str] = Agent(model)
    one = await agent.run("a")
    two = await agent.run("b", message_history=one.all_messages())
    three = await agent.run("c", message_history=two.all_messages())
    assert [one.output, two.output, three.output] == ["first", "second", DONE_TEXT]


async def test_one_model_serves_concurrent_chats_deterministically() -> None:
    model = zero_latency_execute_model()
    workspaces = [Workspace() for _ in range(8)]
    results = await asyncio.gather(
        *(ws.agent(model).run(f"chat {i}") for i, ws in enumerate(workspaces))
    )
    assert [r.output for r in results] == ["ok"] * 8
    assert all(ws.calls == [("execute", {"command": "true"})] for ws in workspaces)


async def test_scripted_model_builder_records_requests() -> None:
    scripted = ScriptedModel().call("execute", command="echo hi").say("bye")
    agent: Agent[None, str] = Workspace().agent(scripted.build())
    result = await agent.run("go", instructions="SYSTEM PROMPT")
    assert result.output == "bye"
    assert len(scripted.requests) == 2
    assert scripted.requests[0].instructions == "SYSTEM PROMPT"
    assert "execute" in scripted.requests[0].tool_names


def test_system_notices_sent_as_user_prompts_do_not_restart_the_script() -> None:
    """When tools appear mid-run pydantic-ai tells the model with a ``<system>…`` user
    prompt; the script must keep its position instead of replaying from the start."""
    from pydantic_ai import messages as pai

    from tether.llm.scripted import current_turn, turn_position

    history: list[pai.ModelMessage] = [
        pai.ModelRequest(parts=[pai.UserPromptPart(content="build it")]),
        pai.ModelResponse(parts=[pai.TextPart(content="step 1")]),
        pai.ModelRequest(
            parts=[pai.UserPromptPart(content="<system>The following tool(s) are now available")]
        ),
        pai.ModelResponse(parts=[pai.TextPart(content="step 2")]),
    ]
    assert turn_position(history) == 2
    assert current_turn(history) == history
