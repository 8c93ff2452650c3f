"""Chats against real agents: the scripted end-to-end conversation, workspace tools and
typed errors, create_workspace (CW-*) and start/stop_workspace (SW-*)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from chatd_env import PYTHON_TEMPLATE, Chatd
from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether.chatd.tools.lifecycle import generate_name, workspace_name_for
from tether.chatd.turn.agents import TurnAgent
from tether.db.tables import workspace_agents
from tether.domain.chat import ChatStatus
from tether.domain.workspace import Transition
from tether.llm.scripted import (
    Call,
    CallMany,
    Say,
    Then,
    demo_model,
    last_result,
    script_model,
)

BROKEN = """
name: broken
backend: nowhere
"""


def _value(result: dict[str, Any]) -> Any:
    return result["result"]


async def test_e2e_scripted_conversation_against_real_agent(chatd: Chatd) -> None:
    """list_templates → create_workspace → write_file → execute → read_file → answer;
    CW-27: the agent is bound lazily on the first workspace tool call."""
    chatd.start_worker()
    chat = await chatd.new_chat("make hello", demo_model())
    events = chatd.record_events(chat.id)
    chat = await chatd.wait_status(chat.id, timeout=60)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    results = await chatd.results(chat.id)
    assert [r["tool_name"] for r in results] == [
        "list_templates",
        "create_workspace",
        "write_file",
        "execute",
        "read_file",
    ]
    assert not any(r.get("is_error") for r in results), results
    created = _value(results[1])
    assert created["created"] is True and created["workspace_name"].startswith("admin/python-")
    executed = _value(results[3])
    assert executed["success"] is True and "hello from tether" in executed["output"]
    answer = (await chatd.messages(chat.id))[-1]
    assert answer.role == "assistant" and "hello from tether" in answer.parts[0]["text"]
    # binding: workspace + build set at create, agent bound lazily by write_file (CW-27)
    assert chat.workspace_id is not None and chat.agent_id is not None
    agents = await chatd.graph.agents.latest_build_agents(chat.workspace_id)
    assert chat.agent_id == agents[0].id and chat.build_id == agents[0].build_id
    kinds = {e.data.get("kind") for e in events if e.event == "message_part"}
    assert {"text", "tool-call", "tool-result"} <= kinds


def _meeting(base: FunctionModel, gate: asyncio.Barrier) -> FunctionModel:
    """``base``, whose second request of a turn waits (bounded) until ``gate`` is full."""
    assert base.function is not None and base.stream_function is not None
    function, stream_function = base.function, base.stream_function

    async def meet(messages: list[pai.ModelMessage]) -> None:
        if sum(isinstance(m, pai.ModelResponse) for m in messages) == 1:
            async with asyncio.timeout(20):
                await gate.wait()

    async def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        await meet(messages)
        return await function(messages, info)  # type: ignore[no-any-return,misc]

    async def stream(messages: list[pai.ModelMessage], info: AgentInfo) -> Any:
        await meet(messages)
        async for item in stream_function(messages, info):
            yield item

    return FunctionModel(respond, stream_function=stream, model_name=base.model_name)


async def test_shared_tools_act_on_the_chat_whose_turn_called_them(chatd: Chatd) -> None:
    """Issue #12: the worker's chats share one set of tools (chatd/turn/agents.py,
    ``ChatAgents``). Two chats on two workspaces, their turns interleaved (each writes,
    then both wait for the other before reading): every call reaches its own chat's
    workspace — never the other's."""
    ws_a, _ = await chatd.create_workspace("wa")
    ws_b, _ = await chatd.create_workspace("wb")
    worker = chatd.start_worker()
    gate = asyncio.Barrier(2)
    chats = {}
    for name, ws in (("alpha", ws_a), ("beta", ws_b)):
        steps = [
            Call("write_file", {"path": "who.txt", "content": name}),
            Call("read_file", {"path": "who.txt"}),
            Say("done"),
        ]
        chat = await chatd.new_chat(name, _meeting(script_model(steps), gate), workspace_id=ws.id)
        chats[name] = chat
    for name, chat in chats.items():
        done = await chatd.wait_status(chat.id, timeout=60)
        assert done.status is ChatStatus.WAITING, done.last_error
        [read] = await chatd.results(chat.id, "read_file")
        assert read["result"]["content"].strip() == name
    kept = [worker.state(c.id) for c in chats.values()]
    agents = {id(s.turn_agent.agent) for s in kept if s and isinstance(s.turn_agent, TurnAgent)}
    assert len(agents) == 1


async def test_tool_on_stopped_workspace_is_typed_and_turn_goes_on(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    chatd.start_worker()
    chat = await chatd.new_chat(
        "run",
        script_model([Call("execute", {"command": "true"}), Say("it is stopped")]),
        workspace_id=ws.id,
    )
    chat = await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "execute")
    assert result["is_error"] and result["error_code"] == "workspace_stopped"
    assert result["remediation"] == "start_workspace"
    assert chat.status is ChatStatus.WAITING


async def test_workspace_tools_roundtrip(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    chatd.start_worker()
    model = script_model(
        [
            Call("write_file", {"path": "a.txt", "content": "one\ntwo\n"}),
            Call(
                "edit_files",
                {"files": [{"path": "a.txt", "edits": [{"search": "two", "replace": "2"}]}]},
            ),
            Call("read_file", {"path": "a.txt", "offset": 2}),
            Call("list_dir", {"path": "."}),
            Call("execute", {"command": "sleep 5", "timeout": "200ms"}),
            Call("execute", {"command": "echo bg; sleep 0.1", "run_in_background": True}),
            Then(
                lambda m: Call(
                    "process_output",
                    {"process_id": last_result(m, "execute").value["background_process_id"]},
                )
            ),  # type: ignore[union-attr]
            Call("process_list", {}),
            Call("read_file", {"path": "missing.txt"}),
            Call("execute", {"command": "cat a.txt"}),
            Say("done"),
        ]
    )
    chat = await chatd.new_chat("go", model, workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    r = {i: x for i, x in enumerate(await chatd.results(chat.id))}
    assert r[0]["result"]["ok"] is True
    assert r[1]["result"]["files"][0]["ok"] is True
    assert r[2]["result"]["content"].strip() == "2"
    assert "a.txt" in json.dumps(r[3]["result"])
    timed_out = r[4]["result"]
    assert timed_out["success"] is False and timed_out["exit_code"] == -1
    assert "timed out" in timed_out["error"]
    assert r[5]["result"]["background_process_id"]
    assert "bg" in r[6]["result"]["output"] or r[6]["result"]["running"]
    assert r[7]["result"]["processes"]
    assert r[8]["is_error"] and r[8]["error_code"] == "not_found"
    assert r[9]["result"]["note"] and "read_file" in r[9]["result"]["note"]


async def test_cw8_ttl_from_settings_and_cw9_zero_uses_template_default(chatd: Chatd) -> None:
    chatd.start_worker()
    create = [Call("create_workspace", {"template_id": str(chatd.template_id)}), Say("ok")]
    chat = await chatd.run_chat("zero", script_model(create))
    ws = await chatd.graph.workspace_store.get(chat.workspace_id)
    assert ws.ttl_ms is None  # CW-9
    chatd.graph.settings.chat_workspace_ttl_ms = 7_200_000
    chat = await chatd.run_chat("two hours", script_model(create))
    ws = await chatd.graph.workspace_store.get(chat.workspace_id)
    assert ws.ttl_ms == 7_200_000  # CW-8


async def test_cw12_existing_connected_agent_no_dial_and_cw22_parallel(chatd: Chatd) -> None:
    chatd.start_worker()
    tid = str(chatd.template_id)
    model = script_model(
        [
            CallMany(
                [
                    Call("create_workspace", {"template_id": tid, "name": "one"}),
                    Call("create_workspace", {"template_id": tid, "name": "two"}),
                ]
            ),
            Say("ok"),
        ]
    )
    chat = await chatd.run_chat("two at once", model, timeout=60)
    results = [_value(r) for r in await chatd.results(chat.id, "create_workspace")]
    assert sorted(r["created"] for r in results) == [False, True]  # CW-22: no duplicate
    assert len(await chatd.graph.workspace_store.list()) == 1
    probes = chatd.dialer.probes
    await chatd.send(chat.id, "again")
    chat = await chatd.wait_status(chat.id)
    [*_, again] = await chatd.results(chat.id, "create_workspace")
    value = _value(again)
    assert value["created"] is False and value["status"] == "already_exists"  # CW-12
    assert "recently connected" in value["message"] and "/" not in value["workspace_name"]
    assert chatd.dialer.probes == probes  # no dial


async def test_cw14_connecting_agent_waits_with_one_probe(chatd: Chatd) -> None:
    ws, build = await chatd.create_workspace()
    agent = (await chatd.graph.agents.latest_build_agents(ws.id))[0]
    async with chatd.graph.engine.begin() as conn:  # "never connected, within its timeout"
        await conn.execute(
            sa.update(workspace_agents)
            .where(workspace_agents.c.id == agent.id)
            .values(first_connected_at=None)
        )
    chatd.start_worker()
    chat = await chatd.new_chat(
        "c",
        script_model([Call("create_workspace", {"template_id": str(chatd.template_id)})]),
        workspace_id=ws.id,
        build_id=build.id,
    )
    await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "create_workspace")
    assert "still connecting" in _value(result)["message"]
    assert chatd.dialer.probes == 1


async def test_cw15_disconnected_cw16_timed_out_cw17_deleted_allow_creation(chatd: Chatd) -> None:
    chatd.start_worker()
    tid = str(chatd.template_id)
    for case in ("disconnected", "timeout", "deleted"):
        ws, build = await chatd.create_workspace(name=f"old-{case}")
        agent = (await chatd.graph.agents.latest_build_agents(ws.id))[0]
        if case == "deleted":
            await chatd.stop_workspace(ws.id)  # teardown does not see deleted workspaces
            await chatd.graph.workspace_store.mark_deleted(ws.id)
        else:
            values: dict[str, Any] = {
                "disconnected_at": chatd.graph.clock.now() + timedelta(hours=1)
            }
            if case == "timeout":
                values = {
                    "first_connected_at": None,
                    "created_at": chatd.graph.clock.now() - timedelta(hours=1),
                }
            async with chatd.graph.engine.begin() as conn:
                await conn.execute(
                    sa.update(workspace_agents)
                    .where(workspace_agents.c.id == agent.id)
                    .values(**values)
                )
        chat = await chatd.new_chat(
            case,
            script_model([Call("create_workspace", {"template_id": tid}), Say("ok")]),
            workspace_id=ws.id,
            build_id=build.id,
        )
        chat = await chatd.wait_status(chat.id, timeout=60)
        [result] = await chatd.results(chat.id, "create_workspace")
        assert _value(result)["created"] is True, (case, result)
        assert chat.workspace_id != ws.id


async def test_cw18_stopped_workspace_points_to_start(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    chatd.start_worker()
    chat = await chatd.new_chat(
        "c",
        script_model([Call("create_workspace", {"template_id": str(chatd.template_id)})]),
        workspace_id=ws.id,
    )
    await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "create_workspace")
    value = _value(result)
    assert value["created"] is False and value["status"] == "stopped"
    assert "start_workspace" in value["message"]
    assert len(await chatd.graph.workspace_store.list()) == 1


async def test_cw20_new_build_fails_normal_result_binding_kept(chatd: Chatd) -> None:
    broken = await chatd.push_template(BROKEN)
    chatd.start_worker()
    chat = await chatd.run_chat(
        "c", script_model([Call("create_workspace", {"template_id": str(broken)}), Say("k")])
    )
    [result] = await chatd.results(chat.id, "create_workspace")
    assert not result.get("is_error")
    value = _value(result)
    assert value["error"].startswith("workspace build failed: ") and "nowhere" in value["error"]
    assert value["build_id"] and chat.workspace_id is not None
    assert str(chat.build_id) == value["build_id"]


async def test_cw19_existing_build_fails_while_waiting(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    await chatd.push_template((chatd_repo_template()).replace("backend: local", "backend: nowhere"))
    await chatd.pause_provisioner()
    pending = await chatd.transition(ws.id, Transition.START)
    chatd.start_worker()
    chat = await chatd.new_chat(
        "c",
        script_model([Call("create_workspace", {"template_id": str(chatd.template_id)})]),
        workspace_id=ws.id,
    )
    await _wait_build_bound(chatd, chat.id, pending.id)
    chatd.resume_provisioner()
    await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "create_workspace")
    value = _value(result)
    assert value["error"].startswith("existing workspace build failed")
    assert value["build_id"] == str(pending.id)


def chatd_repo_template() -> str:
    return PYTHON_TEMPLATE.read_text()


async def _wait_build_bound(chatd: Chatd, chat_id: Any, build_id: Any) -> None:
    for _ in range(500):
        if (await chatd.chats.get(chat_id)).build_id == build_id:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the tool did not bind the in-progress build")


def test_cw25_name_handling() -> None:
    assert workspace_name_for("my-repo", "python") == "my-repo"
    generated = workspace_name_for("", "python")
    assert generated.startswith("python-") and len(generated) == len("python-") + 4
    from_given = workspace_name_for("My Repo!!", "python")
    assert from_given.startswith("my-repo-")
    assert len(generate_name("x" * 80)) <= 27 + 5
    assert generate_name("!!!").startswith("workspace-")


async def test_sw2_already_running_and_sw13_lazy_bind(chatd: Chatd) -> None:
    ws, build = await chatd.create_workspace()
    chatd.start_worker()
    model = script_model(
        [Call("start_workspace", {}), Call("execute", {"command": "true"}), Say("k")]
    )
    chat = await chatd.new_chat("s", model, workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "start_workspace")
    value = _value(result)
    assert value["started"] is True and value["no_build"] is True and "build_id" not in value
    assert chat.agent_id is not None and chat.build_id == build.id


async def test_sw6_stopped_workspace_starts_and_sw13_binds_new_agent(chatd: Chatd) -> None:
    ws, first = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    chatd.start_worker()
    model = script_model(
        [Call("start_workspace", {}), Call("execute", {"command": "echo hi"}), Say("k")]
    )
    chat = await chatd.new_chat("s", model, workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id, timeout=60)
    [result] = await chatd.results(chat.id, "start_workspace")
    value = _value(result)
    assert value["started"] is True and "no_build" not in value
    assert value["build_id"] and value["build_id"] != str(first.id)
    [executed] = await chatd.results(chat.id, "execute")
    assert executed["result"]["success"] is True
    agents = await chatd.graph.agents.latest_build_agents(ws.id)
    assert chat.agent_id == agents[0].id and str(chat.build_id) == value["build_id"]


async def test_sw8_in_progress_build_waits_and_sw9_failure(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    await chatd.pause_provisioner()
    pending = await chatd.transition(ws.id, Transition.START)
    chatd.start_worker()
    chat = await chatd.new_chat(
        "s", script_model([Call("start_workspace", {})]), workspace_id=ws.id
    )
    await _wait_build_bound(chatd, chat.id, pending.id)  # SW-8: binding updated
    chatd.resume_provisioner()
    await chatd.wait_status(chat.id, timeout=60)
    [result] = await chatd.results(chat.id, "start_workspace")
    assert _value(result)["build_id"] == str(pending.id) and _value(result)["started"]
    # SW-9: the in-progress build fails
    await chatd.stop_workspace(ws.id)
    await chatd.push_template(chatd_repo_template().replace("backend: local", "backend: nowhere"))
    await chatd.pause_provisioner()
    pending = await chatd.transition(ws.id, Transition.START)
    await chatd.send(chat.id, "again")
    await _wait_build_bound(chatd, chat.id, pending.id)
    chatd.resume_provisioner()
    await chatd.wait_status(chat.id, timeout=60)
    [*_, failed] = await chatd.results(chat.id, "start_workspace")
    assert not failed.get("is_error")
    assert _value(failed)["error"].startswith("waiting for in-progress build")


async def test_sw10_start_build_failure_and_sw11_deleted(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    await chatd.push_template(chatd_repo_template().replace("backend: local", "backend: nowhere"))
    chatd.start_worker()
    chat = await chatd.new_chat(
        "s", script_model([Call("start_workspace", {}), Say("k")]), workspace_id=ws.id
    )
    await chatd.wait_status(chat.id, timeout=60)
    [result] = await chatd.results(chat.id, "start_workspace")
    value = _value(result)
    assert value["error"].startswith("workspace start build failed") and value["build_id"]
    await chatd.graph.workspace_store.mark_deleted(ws.id)
    await chatd.send(chat.id, "again")
    await chatd.wait_status(chat.id)
    [*_, deleted] = await chatd.results(chat.id, "start_workspace")
    assert deleted["is_error"] and deleted["error_code"] == "workspace_deleted"


async def test_stop_workspace_then_tools_report_stopped(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    chatd.start_worker()
    model = script_model(
        [
            Call("execute", {"command": "true"}),
            Call("stop_workspace", {}),
            Call("execute", {"command": "true"}),
            Say("k"),
        ]
    )
    chat = await chatd.new_chat("s", model, workspace_id=ws.id)
    await chatd.wait_status(chat.id, timeout=60)
    first, second = await chatd.results(chat.id, "execute")
    assert first["result"]["success"] is True
    [stopped] = await chatd.results(chat.id, "stop_workspace")
    assert _value(stopped)["stopped"] is True and _value(stopped)["build_id"]
    assert second["error_code"] == "workspace_stopped"


async def test_build_event_evicts_cached_connection_across_turns(chatd: Chatd) -> None:
    """The conn stays cached after the turn (warm next turn); an external stop build's event
    evicts it at once, and the next turn's tool call reports workspace_stopped."""
    ws, _ = await chatd.create_workspace()
    worker = chatd.start_worker()
    model = script_model([Call("execute", {"command": "true"}), Say("k")])
    chat = await chatd.new_chat("one", model, workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    state = worker.state(chat.id)
    assert state is not None and state.conns.cached_conn is not None
    dials = len(chatd.dialer.calls)
    await chatd.send(chat.id, "two")  # warm turn: no new dial
    await chatd.wait_status(chat.id)
    assert len(chatd.dialer.calls) == dials
    await chatd.stop_workspace(ws.id)
    for _ in range(200):
        if state.conns.cached_conn is None:
            break
        await asyncio.sleep(0.01)
    assert state.conns.cached_conn is None
    await chatd.send(chat.id, "three")
    await chatd.wait_status(chat.id)
    *_, last = await chatd.results(chat.id, "execute")
    assert last["error_code"] == "workspace_stopped"


async def test_idle_chat_drops_its_cached_connection_and_stream_state(chatd: Chatd) -> None:
    """A chat without a turn for ``worker_chat_idle_s`` no longer holds a socket or a hub
    buffer in the worker (1,000 idle chats must not hold 1,000 agent connections); its next
    turn dials again and works."""
    ws, _ = await chatd.create_workspace()
    worker = chatd.start_worker(chat_idle_s=3600.0)
    model = script_model([Call("execute", {"command": "true"}), Say("k")])
    chat = await chatd.new_chat("one", model, workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    # The status is written by the turn itself; the worker's bookkeeping (the turn counted
    # as ended, its idle clock started) follows when the turn's task has returned.
    async with asyncio.timeout(10):
        while True:
            if chat.id not in worker.running:
                break
            await asyncio.sleep(0.01)
    state = worker.state(chat.id)
    assert state is not None and state.conns.cached_conn is not None
    assert await worker.forget_idle() == []  # idle for less than chat_idle_s: kept
    assert worker.state(chat.id) is state
    hub = chatd.graph.hub
    assert chat.id in hub._chats
    worker._chat_idle_s = 0.0
    assert await worker.forget_idle() == [chat.id]
    assert worker.state(chat.id) is None and state.conns.cached_conn is None
    assert chat.id not in hub._chats
    dials = len(chatd.dialer.calls)
    await chatd.send(chat.id, "two")
    await chatd.wait_status(chat.id)
    assert len(chatd.dialer.calls) == dials + 1
    *_, last = await chatd.results(chat.id, "execute")
    assert last["result"]["success"] is True
