"""Turn runner and worker behaviour that needs no workspace: tool-argument errors, typed
no-workspace errors, provider retries and failures, interrupts, shutdown and recovery."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from chatd_env import Chatd
from pydantic_ai import Tool
from pydantic_ai import messages as pai
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from tether.chatd.compaction import longchat_of
from tether.chatd.turn.agents import ChatTools, TurnAgent
from tether.domain.chat import ChatStatus
from tether.errors import InvalidInput
from tether.ids import new_id
from tether.llm.budget import Budget, attach_budget
from tether.llm.scripted import Call, Say, script_model


def _last_user_text(messages: list[pai.ModelMessage]) -> str:
    for m in reversed(messages):
        if isinstance(m, pai.ModelRequest):
            for p in m.parts:
                if isinstance(p, pai.UserPromptPart) and isinstance(p.content, str):
                    return p.content
    return ""


async def test_invalid_tool_args_become_error_result_and_turn_goes_on(chatd: Chatd) -> None:
    chatd.start_worker()
    model = script_model([Call("execute", {"cmd": "ls"}), Say("I fixed nothing")])
    chat = await chatd.run_chat("go", model)
    assert chat.status is ChatStatus.WAITING
    [result] = await chatd.results(chat.id, "execute")
    assert result["is_error"] is True
    assert result["error_code"] == "invalid_arguments"
    assert "command" in result["result"] and "cmd" in result["result"]
    last = (await chatd.messages(chat.id))[-1]
    assert last.role == "assistant" and last.parts[0]["text"] == "I fixed nothing"


async def test_invalid_execute_timeout_is_error_result(chatd: Chatd) -> None:
    chatd.start_worker()
    model = script_model([Call("execute", {"command": "true", "timeout": "soon"}), Say("ok")])
    chat = await chatd.run_chat("go", model)
    [result] = await chatd.results(chat.id, "execute")
    assert result["error_code"] == "invalid_arguments" and "soon" in result["result"]
    assert chat.status is ChatStatus.WAITING


async def test_tool_without_workspace_gets_typed_no_workspace(chatd: Chatd) -> None:
    chatd.start_worker()
    model = script_model([Call("read_file", {"path": "x"}), Say("no workspace")])
    chat = await chatd.run_chat("go", model)
    [result] = await chatd.results(chat.id, "read_file")
    assert result["is_error"] and result["error_code"] == "no_workspace"
    assert result["remediation"] == "create_workspace"
    assert chat.status is ChatStatus.WAITING


async def test_sw1_start_workspace_without_workspace(chatd: Chatd) -> None:
    chatd.start_worker()
    chat = await chatd.run_chat("go", script_model([Call("start_workspace", {}), Say("k")]))
    [result] = await chatd.results(chat.id, "start_workspace")
    assert result["error_code"] == "no_workspace" and "create_workspace" in result["result"]


def _flaky_model(failures: list[int]) -> FunctionModel:
    """Fails with the given HTTP statuses first, then answers ``recovered``."""
    remaining = list(failures)

    async def stream(messages: list[pai.ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        if remaining:
            raise ModelHTTPError(remaining.pop(0), "flaky", body="overloaded")
        yield "recovered"

    async def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        raise AssertionError("the turn runner streams")

    return FunctionModel(respond, stream_function=stream, model_name="flaky")


async def test_provider_503_twice_then_success_emits_retry_events(chatd: Chatd) -> None:
    chatd.start_worker()
    chat = await chatd.new_chat("hi", _flaky_model([503, 503]))
    events = chatd.record_events(chat.id)
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING
    retries = [e.data for e in events if e.event == "retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert (await chatd.messages(chat.id))[-1].parts[0]["text"] == "recovered"


async def test_provider_always_500_fails_the_turn(chatd: Chatd) -> None:
    chatd.start_worker()
    chat = await chatd.new_chat("hi", _flaky_model([500] * 10))
    events = chatd.record_events(chat.id)
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.ERROR
    assert chat.last_error_code == "provider_error"
    assert chat.last_error is not None and "500" in chat.last_error
    assert (
        len([e for e in events if e.event == "retry"]) == chatd.graph.settings.provider_max_retries
    )
    assert any(e.event == "error" for e in events)


def _blocking_model(gate: asyncio.Event, *, first_step_tool: bool = False) -> FunctionModel:
    """First user message: optionally one list_templates call, then stream "partial answer "
    and block until ``gate`` is set, then finish. Any other user message: "done"."""

    async def stream(
        messages: list[pai.ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        if _last_user_text(messages) != "first":
            yield "done"
            return
        responses = sum(isinstance(m, pai.ModelResponse) for m in messages)
        if first_step_tool and responses == 0:
            yield {0: DeltaToolCall(name="list_templates", json_args="{}", tool_call_id="t1")}
            return
        yield "partial answer "
        await gate.wait()
        yield "and the rest"

    async def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        raise AssertionError("the turn runner streams")

    return FunctionModel(respond, stream_function=stream, model_name="blocking")


async def _wait_partial(chatd: Chatd, events: list[Any]) -> None:
    for _ in range(500):
        if any(e.event == "message_part" and "partial" in e.data.get("delta", "") for e in events):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no partial text streamed")


async def test_interrupt_persists_partial_text_and_promotes_queued(chatd: Chatd) -> None:
    chatd.start_worker()
    gate = asyncio.Event()
    chat = await chatd.new_chat("first", _blocking_model(gate))
    events = chatd.record_events(chat.id)
    await _wait_partial(chatd, events)
    await chatd.chats.enqueue(chat.id, [{"type": "text", "text": "second"}], max_queued=20)
    await chatd.chats.transition(chat.id, ChatStatus.INTERRUPTING, interrupt_requested=True)
    await chatd.graph.bus.publish(f"chat:{chat.id}", {"type": "interrupt"})
    # the promoted message runs as the next turn
    for _ in range(500):
        msgs = await chatd.messages(chat.id)
        if msgs[-1].role == "assistant" and msgs[-1].parts[0]["text"] == "done":
            break
        await asyncio.sleep(0.02)
    chat = await chatd.wait_status(chat.id)
    msgs = await chatd.messages(chat.id)
    roles = [m.role for m in msgs]
    assert roles == ["user", "assistant", "user", "assistant"]
    partial = msgs[1].parts[0]["text"]
    assert partial.startswith("partial answer") and "interrupted" in partial
    assert "the rest" not in partial
    assert msgs[2].parts[0]["text"] == "second"
    assert chat.status is ChatStatus.WAITING
    assert await chatd.chats.queued(chat.id) == []


async def test_worker_shutdown_mid_turn_returns_chat_to_pending(chatd: Chatd) -> None:
    chatd.start_worker()
    gate = asyncio.Event()
    chat = await chatd.new_chat("first", _blocking_model(gate, first_step_tool=True))
    events = chatd.record_events(chat.id)
    await _wait_partial(chatd, events)
    before = await chatd.messages(chat.id)
    assert [m.role for m in before] == ["user", "assistant", "tool"]  # step 1 committed
    await chatd.stop_worker()
    row = await chatd.chats.get(chat.id)
    assert row.status is ChatStatus.PENDING and row.worker_id is None
    assert [m.id for m in await chatd.messages(chat.id)] == [m.id for m in before]
    gate.set()
    chatd.start_worker()
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING
    msgs = await chatd.messages(chat.id)
    assert [m.id for m in msgs[:3]] == [m.id for m in before]
    assert msgs[-1].parts[0]["text"] == "partial answer and the rest"


async def test_wk2_heartbeat_loss_cancels_turn_without_side_effects(chatd: Chatd) -> None:
    worker = chatd.start_worker(heartbeat_s=3600.0)
    gate = asyncio.Event()
    chat = await chatd.new_chat("first", _blocking_model(gate))
    events = chatd.record_events(chat.id)
    await _wait_partial(chatd, events)
    other = new_id()
    await chatd.chats.set_fields(chat.id, worker_id=other)  # another worker took it over
    await worker.heartbeat_once()
    for _ in range(200):
        if chat.id not in worker.running:
            break
        await asyncio.sleep(0.01)
    assert chat.id not in worker.running
    row = await chatd.chats.get(chat.id)
    assert row.status is ChatStatus.RUNNING and row.worker_id == other
    assert [m.role for m in await chatd.messages(chat.id)] == ["user"]  # nothing finished


async def test_wk3_stale_sweep_returns_chat_to_pending(chatd: Chatd) -> None:
    chat = await chatd.chats.create(
        owner_id=chatd.owner.id, title="t", first_message=[{"type": "text", "text": "x"}]
    )
    dead_worker = new_id()
    [claimed] = await chatd.chats.claim(dead_worker, limit=1)
    assert claimed.id == chat.id
    old = chatd.graph.clock.now() - timedelta(seconds=60)
    await chatd.chats.set_fields(chat.id, heartbeat_at=old)
    worker = chatd.start_worker(stale_after_s=30.0)
    recovered = await worker.sweep_once()
    assert chat.id in recovered
    chatd.models[chat.id] = script_model([Say("recovered")])
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING


async def test_a_model_that_cannot_be_built_fails_the_turn_instead_of_hanging(
    chatd: Chatd,
) -> None:
    """A bad model spec or a missing provider key: the chat goes to ``error`` with a
    clear ``last_error`` at once (it used to stay ``running`` until the stale sweep)."""

    def broken(chat: Any) -> Any:
        raise InvalidInput("OPENAI_API_KEY is not set", field="model")

    chatd.model_for = broken  # type: ignore[method-assign]
    chatd.start_worker()
    chat = await chatd.new_chat("hi")
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.ERROR
    assert chat.last_error_code == "invalid_input"
    assert chat.last_error is not None and "OPENAI_API_KEY" in chat.last_error


async def test_a_budgeted_chats_agent_measures_every_turn_with_its_own_budget(
    chatd: Chatd,
) -> None:
    """A model with a context window: the chat's agent, built once, measures each turn's
    requests by that turn's budget through its one capability (chatd/turn/agents.py; a
    hook left pointing at the first turn's would leave later turns unmeasured); between
    turns the agent holds no turn's budget. The chat's tools come through the same
    capability, beside no second toolset."""
    worker = chatd.start_worker()
    steps = [Call("read_file", {"path": "x"}), Say("k")]
    model = attach_budget(script_model(steps), Budget(1_000_000))
    chat = await chatd.run_chat("one", model)
    state = worker.state(chat.id)
    assert state is not None
    first = state.turn_agent
    assert isinstance(first, TurnAgent)
    capabilities = first.agent.root_capability.capabilities
    assert len([c for c in capabilities if isinstance(c, ChatTools)]) == 1
    assert len(first.agent.toolsets) == 1  # pydantic-ai's own (empty) function toolset
    for text in ("two", "three"):
        await chatd.send(chat.id, text)
        await chatd.wait_status(chat.id)
    assert state.turn_agent is first and first.built == 1 and first.context is None
    usage = await longchat_of(chatd.graph).store.usage(chat.id)
    assert len(usage) == 6  # two requests per turn, each measured before it was sent
    assert all(estimated for _in, _out, estimated in usage)
    results = await chatd.results(chat.id, "read_file")
    assert [r["error_code"] for r in results] == ["no_workspace"] * 3  # the tools ran


async def test_a_chats_tools_and_agent_are_built_once_and_follow_its_turns(chatd: Chatd) -> None:
    """The tools and agent are reused by a chat's later turns (chatd/turn/agents.py), see
    each turn's chat, and are rebuilt when the tool set changes (plan mode, PL-9)."""
    worker = chatd.start_worker()
    seen_tools: list[set[str]] = []

    def on_request(messages: list[pai.ModelMessage], info: AgentInfo) -> None:
        seen_tools.append({t.name for t in info.function_tools})

    model = script_model([Call("read_file", {"path": "x"}), Say("k")], on_request=on_request)
    chat = await chatd.run_chat("one", model)
    state = worker.state(chat.id)
    assert state is not None
    first = state.turn_agent
    assert isinstance(first, TurnAgent)
    for text in ("two", "three"):
        await chatd.send(chat.id, text)
        await chatd.wait_status(chat.id)
    assert state.turn_agent is first and first.built == 1
    assert first.ctx.chat.status is ChatStatus.RUNNING  # the last turn's chat
    # what the agent keeps between turns holds none of the last turn's history or hooks
    assert first.turn_ws.view is None and first.turn_ws.mcp is None
    assert first.ctx.on_workspace_ready is None
    results = await chatd.results(chat.id, "read_file")
    assert [r["error_code"] for r in results] == ["no_workspace"] * 3
    await chatd.chats.set_fields(chat.id, plan_mode=True)
    await chatd.send(chat.id, "four")
    await chatd.wait_status(chat.id)
    rebuilt = state.turn_agent
    assert isinstance(rebuilt, TurnAgent) and rebuilt is not first and rebuilt.built == 2
    assert "edit_files" in seen_tools[0] and "edit_files" not in seen_tools[-1]


def _tools_alive() -> int:
    """pydantic-ai tools the garbage collector tracks (what a full collection walks)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Tool))


async def test_the_workers_chats_share_one_set_of_tools_and_one_agent(chatd: Chatd) -> None:
    """Issue #12 (the open-loop tail): a chat's kept tools and agent are the worker's
    shared ones (chatd/turn/agents.py, ``ChatAgents``), so the objects a full garbage
    collection walks do not grow by ~17 tools per cached chat; a chat in plan mode,
    whose tools name its own plan file (PL-9), has its own."""
    worker = chatd.start_worker()

    def model() -> Any:
        return script_model([Call("read_file", {"path": "x"}), Say("k")])

    first = await chatd.run_chat("one", model())
    alive = _tools_alive()
    chats = [await chatd.new_chat(f"chat {i}", model()) for i in range(5)]
    for chat in chats:
        assert (await chatd.wait_status(chat.id)).status is ChatStatus.WAITING
    assert _tools_alive() == alive
    kept = [worker.state(c.id) for c in (first, *chats)]
    agents = {id(s.turn_agent.agent) for s in kept if s and isinstance(s.turn_agent, TurnAgent)}
    assert len(agents) == 1
    for chat in (first, *chats):  # each call acted on its own chat
        results = await chatd.results(chat.id, "read_file")
        assert [r["error_code"] for r in results] == ["no_workspace"]
    plan = await chatd.new_chat("plan", model(), plan_mode=True)
    await chatd.wait_status(plan.id)
    state = worker.state(plan.id)
    assert state is not None and isinstance(state.turn_agent, TurnAgent)
    assert id(state.turn_agent.agent) not in agents
