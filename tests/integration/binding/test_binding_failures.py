"""Agent failures against real agents (docs/behaviour.md §9.3/§9.8): a crashed agent on an unchanged
build (E2E-7/GC-4), an agent dying mid-turn (E2E-9/GC-8), a dial that never completes
(E2E-10/GC-16) and an interrupt during it, a transient DB error during validation, a
``timeout``-status agent that works (GC-7), and subagents sharing the parent's path.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from binding_env import BindingEnv, binding_writes, resolution_queries, tcp_black_hole
from sqlalchemy.exc import OperationalError

from tether.chatd.binding import ANCESTOR_CHAT_IDS_HEADER, CHAT_ID_HEADER
from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, Then, last_result, script_model
from tether.workspaces.status import compute_agent_status

pytestmark = pytest.mark.integration

PROMPT_S = 0.5
EXECUTE = script_model([Call("execute", {"command": "echo hi"}), Say("ok")])


def _kill_and_wait_dead(pid: int, timeout: float = 2.0) -> None:
    """``kill -9`` ``pid`` and block until it has exited: its sockets are closed then.

    Through a pidfd opened before the kill: it names this process even after the local
    backend's reaper collects it (polling ``/proc/PID/stat`` raced that reaping — the
    file vanishes mid-read with ``ProcessLookupError`` — and made the test flaky), and it
    becomes readable exactly when the process exits."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise AssertionError(f"process {pid} was gone before the kill") from None
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        ready, _, _ = select.select([pidfd], [], [], timeout)
        assert ready, f"process {pid} is still alive {timeout}s after SIGKILL"
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("cache", ["warm", "cold"])
async def test_e2e7_gc4_crashed_agent_same_build_is_agent_unreachable(
    env: BindingEnv, cache: str
) -> None:
    ws, agent = await env.create_workspace()
    env.start_worker()
    chat = await env.new_chat("one", EXECUTE, workspace_id=ws)
    chat = await env.wait_status(chat.id)
    pid = await env.agent_pid(ws)
    _kill_and_wait_dead(pid)
    if cache == "cold":
        await env.stop_worker()
        env.start_worker()
    dials = len(env.dialer.calls)
    chat = await env.turn(chat.id, "two")
    assert chat.status is ChatStatus.WAITING, chat.last_error
    result = (await env.results(chat.id, "execute"))[-1]
    assert result["is_error"] and result["error_code"] == "agent_unreachable", result
    assert "dial with lazy validation" in result["result"]
    assert result["remediation"] == "stop_workspace, then start_workspace"
    span = env.spans(chat.id, "execute")[-1]
    assert span.seconds < PROMPT_S, f"took {span.seconds:.3f}s"
    # the failing call dialled the same agent at most twice (dial + same-agent retry);
    # the pre-LLM steps share that one lazy-validation dial
    failing = [a for a, _ in env.dialer.calls[dials:]]
    assert failing and set(failing) == {agent.id}


async def test_e2e9_gc8_agent_dies_mid_turn_then_restart_works(env: BindingEnv) -> None:
    ws, agent = await env.create_workspace()
    env.start_worker()
    pid = await env.agent_pid(ws)
    marks: dict[str, int] = {}

    def kill_then_execute(_messages: list[Any]) -> Call:
        _kill_and_wait_dead(pid)
        marks["dials"] = len(env.dialer.calls)
        return Call("execute", {"command": "echo two"})

    model = script_model(
        [
            Call("execute", {"command": "echo one"}),
            Then(kill_then_execute),
            Call("stop_workspace", {}),
            Call("start_workspace", {}),
            Call("execute", {"command": "echo three"}),
            Say("recovered"),
        ]
    )
    chat = await env.new_chat("go", model, workspace_id=ws)
    chat = await env.wait_status(chat.id, timeout=60)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    one, two, stopped, started, three = await env.results(chat.id)
    assert one["result"]["output"].strip() == "one"
    assert two["is_error"] and two["error_code"] == "agent_unreachable", two
    assert "dial with lazy validation" in two["result"]
    assert not stopped.get("is_error") and not started.get("is_error"), (stopped, started)
    assert three["result"]["output"].strip() == "three", three
    # the failing call evicted the dead conn and went once through the lazy-validation dial
    # (initial dial + same-agent retry), both to the dead agent
    spans = env.spans(chat.id, "execute")
    assert spans[1].seconds < PROMPT_S
    new = (await env.graph.agents.latest_build_agents(ws))[0]
    dialled = [a for a, _ in env.dialer.calls[marks["dials"] :]]
    assert dialled[:2] == [agent.id, agent.id] and dialled[-1] == new.id
    assert (chat.build_id, chat.agent_id) == (new.build_id, new.id)


async def test_e2e10_gc16_dial_that_never_completes_is_dial_timeout(env: BindingEnv) -> None:
    ws, agent = await env.create_workspace()
    dial_timeout = 0.6
    env.start_worker(dial_timeout_s=dial_timeout)
    with tcp_black_hole() as hole:
        # the agent process keeps pinging (the DB says connected) but its address hangs
        await env.set_agent(agent.id, dial_address=hole.address)
        chat = await env.new_chat(
            "one", EXECUTE, workspace_id=ws, build_id=agent.build_id, agent_id=agent.id
        )
        chat = await env.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    row = await env.graph.agents.get(agent.id)
    assert compute_agent_status(row, env.graph.clock.now(), 5.0).value == "connected"
    [result] = await env.results(chat.id, "execute")
    assert result["is_error"] and result["error_code"] == "dial_timeout", result
    assert result["remediation"] == "retry once"
    span = env.spans(chat.id, "execute")[-1]
    assert dial_timeout * 0.9 <= span.seconds < dial_timeout + 0.4, span.seconds


async def test_e2e10_wk4_interrupt_during_dial_is_an_interrupt(env: BindingEnv) -> None:
    ws, agent = await env.create_workspace()
    env.start_worker(dial_timeout_s=5.0)
    with tcp_black_hole() as hole:
        await env.set_agent(agent.id, dial_address=hole.address)
        chat = await env.new_chat(
            "one", EXECUTE, workspace_id=ws, build_id=agent.build_id, agent_id=agent.id
        )
        deadline = time.monotonic() + 10
        # the turn's dial waits in the hole and the execute call waits for that dial
        while not (hole.dialled() and env.spans_open(chat.id, "execute")):
            assert time.monotonic() < deadline, "execute never waited on a dial"
            await asyncio.sleep(0.01)
        asked = time.monotonic()
        await env.chats.transition(chat.id, ChatStatus.INTERRUPTING, interrupt_requested=True)
        await env.graph.bus.publish(f"chat:{chat.id}", {"type": "interrupt"})
        chat = await env.wait_status(chat.id, timeout=5)
        took = time.monotonic() - asked
    assert chat.status is ChatStatus.WAITING, chat.last_error
    assert took < 1.5, f"interrupt took {took:.3f}s"
    [result] = await env.results(chat.id, "execute")
    assert result["error_code"] == "interrupted", result


async def test_transient_db_error_during_validation_is_not_a_false_stop(
    env: BindingEnv,
) -> None:
    ws, agent = await env.create_workspace()
    env.start_worker()
    assert env.store is not None
    env.dialer.delay = 0.4  # slower than the validation delay (0.25 s), but it succeeds

    def arm(_agent_id: uuid.UUID) -> None:  # fail the validation that this dial triggers
        env.store.fail_next(  # type: ignore[union-attr]
            "latest_build_agents",
            OperationalError("SELECT", {}, Exception("database is locked")),
        )

    env.dialer.on_dial = arm
    chat = await env.new_chat(
        "one", EXECUTE, workspace_id=ws, build_id=agent.build_id, agent_id=agent.id
    )
    chat = await env.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    [result] = await env.results(chat.id, "execute")
    assert not result.get("is_error"), result  # the original dial's conn was used
    assert result["result"]["output"].strip() == "hi"
    assert "latest_build_agents" in env.store.names()  # validation did run (and failed)
    assert [a for a, _ in env.dialer.calls] == [agent.id]


async def test_gc7_timed_out_agent_whose_connection_works_keeps_working(
    env: BindingEnv,
) -> None:
    ws, agent = await env.create_workspace()
    long_ago = env.graph.clock.now() - timedelta(minutes=10)
    await env.set_agent(
        agent.id, first_connected_at=None, created_at=long_ago, connection_timeout_s=60
    )
    row = await env.graph.agents.get(agent.id)
    inactive = env.graph.settings.agent_inactive_disconnect_s
    assert compute_agent_status(row, env.graph.clock.now(), inactive).value == "timeout"
    env.start_worker()
    model = script_model(
        [Call("execute", {"command": "echo a"}), Call("execute", {"command": "echo b"}), Say("k")]
    )
    chat = await env.new_chat(
        "one", model, workspace_id=ws, build_id=agent.build_id, agent_id=agent.id
    )
    chat = await env.wait_status(chat.id)
    chat = await env.turn(chat.id, "two")  # a warm turn on the timed-out agent
    results = await env.results(chat.id, "execute")
    assert [r["result"]["output"].strip() for r in results] == ["a", "b", "a", "b"], results
    assert chat.agent_id == agent.id


async def test_subagent_shares_the_parents_connection_path(env: BindingEnv) -> None:
    ws, agent = await env.create_workspace()
    env.start_worker()
    assert env.store is not None and env.counter is not None
    parent = await env.new_chat("bind", EXECUTE, workspace_id=ws)
    parent = await env.wait_status(parent.id)
    assert parent.agent_id == agent.id

    def wait_child(messages: list[Any]) -> Call:
        spawned = last_result(messages, "spawn_agent")
        assert spawned is not None
        return Call("wait_agent", {"chat_id": spawned.value["chat_id"], "timeout_seconds": 30})

    env.child_models[parent.id] = script_model(
        [Call("execute", {"command": "echo child"}), Say("child done")]
    )
    env.models[parent.id] = script_model(
        [Call("spawn_agent", {"prompt": "do it"}), Then(wait_child), Say("parent done")]
    )
    calls, dials = len(env.store.calls), len(env.dialer.calls)
    with env.counter.measure() as m:
        parent = await env.turn(parent.id, "spawn", timeout=60)
    assert parent.status is ChatStatus.WAITING, parent.last_error
    [spawned] = await env.results(parent.id, "spawn_agent")
    child_id = uuid.UUID(spawned["result"]["chat_id"])
    child = await env.chats.get(child_id)
    [executed] = await env.results(child_id, "execute")
    assert executed["result"]["output"].strip() == "child", executed
    # the pre-LLM gate checks the latest build once (docs/behaviour.md §4.3, shared by the parallel
    # steps); the tool call is binding-first: the inherited agent row is read by id, and
    # nothing is bound lazily or written
    assert env.store.names(calls) == ["latest_build_agents", "get_agent"], env.store.calls
    assert binding_writes(m.statements) == []
    assert len(resolution_queries(m.statements)) == 2
    assert (child.build_id, child.agent_id) == (agent.build_id, agent.id)
    # the child dialled the same agent with its own id and the parent in the ancestor header
    [(dialled, headers)] = env.dialer.calls[dials:]
    assert dialled == agent.id
    assert headers[CHAT_ID_HEADER] == str(child_id)
    assert json.loads(headers[ANCESTOR_CHAT_IDS_HEADER]) == [str(parent.id)]
