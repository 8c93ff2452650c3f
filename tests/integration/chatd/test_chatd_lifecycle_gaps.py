"""create_workspace / start_workspace rows not covered by test_chatd_workspace.py (CW-6/7,
CW-13, CW-21, CW-26, SW-3/4/5/7/12), the mid-chat creation story E2E-3 and the workspace
usage bump WK-7.

tether adaptations: the chat agent is the template's ``chat: true`` agent (no
``-coderd-chat`` name suffix); a build without agents comes from the ``agentless`` test
backend (:class:`chatd_env.InertBackend`) because tether templates must declare at least
one agent; builds that must never connect use the ``inert`` backend.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from chatd_env import Chatd, template_source

from tether.domain.agent import Lifecycle
from tether.domain.chat import ChatStatus
from tether.domain.workspace import JobStatus, Transition
from tether.llm.scripted import Call, Say, script_model

TWO_AGENTS = "[{name: dev, order: 0}, {name: chat, order: 1, chat: true}]"
TWO_CHAT_AGENTS = "[{name: left, chat: true}, {name: right, order: 1, chat: true}]"


def _value(result: dict[str, Any]) -> Any:
    assert not result.get("is_error"), result
    return result["result"]


def _create(template_id: uuid.UUID, **extra: Any) -> Call:
    return Call("create_workspace", {"template_id": str(template_id), **extra})


async def _poll(predicate: Any, what: str, timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_cw6_sw3_readiness_and_binding_prefer_the_chat_true_agent(chatd: Chatd) -> None:
    """CW-6 (create) and SW-3 (start, already running): with agents ``dev`` (order 0) and
    ``chat`` (order 1, ``chat: true``) every readiness probe dials ``chat``, and the lazy
    bind of the following tool call binds ``chat`` too."""
    duo = await chatd.push_template(template_source("duo", agents=TWO_AGENTS))
    chatd.start_worker()
    model = script_model(
        [
            _create(duo),
            Call("start_workspace", {}),
            Call("execute", {"command": "echo hi"}),
            Say("ok"),
        ]
    )
    chat = await chatd.run_chat("duo", model, timeout=60)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    assert chat.workspace_id is not None
    agents = {a.name: a for a in await chatd.graph.agents.latest_build_agents(chat.workspace_id)}
    assert set(agents) == {"dev", "chat"}
    [created] = await chatd.results(chat.id, "create_workspace")
    value = _value(created)
    assert value["created"] is True and value["build_id"] == str(agents["chat"].build_id)
    assert "agent_status" not in value and "startup_scripts" not in value
    [started] = await chatd.results(chat.id, "start_workspace")
    assert _value(started)["no_build"] is True and "agent_status" not in _value(started)
    probes = [agent_id for agent_id, headers in chatd.dialer.calls if not headers]
    assert len(probes) == 2 and set(probes) == {agents["chat"].id}  # CW-6, SW-3
    [executed] = await chatd.results(chat.id, "execute")
    assert _value(executed)["success"] is True
    assert chat.agent_id == agents["chat"].id


async def test_cw7_several_chat_agents_selection_error_without_dial(chatd: Chatd) -> None:
    """CW-7: two ``chat: true`` agents → ``created: true``, ``agent_status:
    selection_error``, ``build_id``; no dial; the binding is written with agent NULL."""
    chatd.add_inert_backends()
    twins = await chatd.push_template(
        template_source("twins", backend="inert", agents=TWO_CHAT_AGENTS)
    )
    chatd.start_worker()
    chat = await chatd.run_chat("twins", script_model([_create(twins, name="pair"), Say("k")]))
    assert chat.status is ChatStatus.WAITING, chat.last_error
    [result] = await chatd.results(chat.id, "create_workspace")
    value = _value(result)
    assert value["created"] is True and value["workspace_name"] == "admin/pair"
    assert value["agent_status"] == "selection_error"
    assert "multiple agents" in value["agent_error"] and "chat: true" in value["agent_error"]
    assert chatd.dialer.calls == []
    assert chat.workspace_id is not None and str(chat.build_id) == value["build_id"]
    assert chat.agent_id is None


async def test_cw21_build_without_agents_reports_no_agent(chatd: Chatd) -> None:
    """CW-21: the new build has no agents → ``created: true``, ``agent_status: no_agent``."""
    chatd.add_inert_backends()
    bare = await chatd.push_template(template_source("bare", backend="agentless"))
    chatd.start_worker()
    chat = await chatd.run_chat("bare", script_model([_create(bare), Say("k")]))
    [result] = await chatd.results(chat.id, "create_workspace")
    value = _value(result)
    assert value["created"] is True and value["agent_status"] == "no_agent"
    assert value["build_id"] and str(chat.build_id) == value["build_id"]
    assert chatd.dialer.calls == []


async def test_cw13_in_progress_build_returns_its_build_id(chatd: Chatd) -> None:
    """CW-13: the chat's workspace has a build in progress and no agents: the tool binds
    that build at once, waits for it and returns ``build_id`` (nothing is created)."""
    chatd.add_inert_backends()
    bare = await chatd.push_template(template_source("bare", backend="agentless"))
    await chatd.pause_provisioner()
    ws, pending = await chatd.workspace_from(bare, "busy", wait=False)
    chatd.start_worker()
    chat = await chatd.new_chat("c", script_model([_create(bare), Say("k")]), workspace_id=ws.id)

    async def bound() -> bool:
        return (await chatd.chats.get(chat.id)).build_id == pending.id

    await _poll(bound, "the in-progress build to be bound")
    assert (await chatd.graph.workspace_store.get_build(pending.id)).status is JobStatus.PENDING
    chatd.resume_provisioner()
    chat = await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "create_workspace")
    value = _value(result)
    assert value["created"] is False and value["status"] == "already_exists"
    assert value["build_id"] == str(pending.id) and "agent_status" not in value
    assert chat.workspace_id == ws.id and chat.build_id == pending.id
    assert len(await chatd.graph.workspace_store.list()) == 1


async def test_cw26_canceling_job_lets_creation_proceed(chatd: Chatd) -> None:
    """CW-26: the latest job is ``canceling``: only pending/running count as in progress,
    so a new workspace is created and bound."""
    chatd.add_inert_backends()
    bare = await chatd.push_template(template_source("bare", backend="agentless"))
    await chatd.pause_provisioner()
    old, build = await chatd.workspace_from(bare, "old", wait=False)
    assert (await chatd.make_canceling(build)).status is JobStatus.CANCELING
    chatd.resume_provisioner()
    chatd.start_worker()
    chat = await chatd.new_chat(
        "c", script_model([_create(bare, name="fresh"), Say("k")]), workspace_id=old.id
    )
    chat = await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "create_workspace")
    value = _value(result)
    assert value["created"] is True and value["workspace_name"] == "admin/fresh"
    assert chat.workspace_id is not None and chat.workspace_id != old.id
    assert str(chat.build_id) == value["build_id"]


async def test_sw4_no_agents_and_sw5_selection_error_when_already_running(
    chatd: Chatd,
) -> None:
    """SW-4: running without agents → ``started``, ``agent_status: no_agent``, ``no_build``.
    SW-5: running with two ``chat: true`` agents → ``agent_status: selection_error`` with the
    selection message (no dial, no start request)."""
    chatd.add_inert_backends()
    bare = await chatd.push_template(template_source("bare", backend="agentless"))
    twins = await chatd.push_template(
        template_source("twins", backend="inert", agents=TWO_CHAT_AGENTS)
    )
    chatd.start_worker()
    expected = {"bare": "no_agent", "twins": "selection_error"}
    for name, template_id in (("bare", bare), ("twins", twins)):
        ws, build = await chatd.workspace_from(template_id, name)
        chat = await chatd.new_chat(
            name, script_model([Call("start_workspace", {}), Say("k")]), workspace_id=ws.id
        )
        chat = await chatd.wait_status(chat.id)
        [result] = await chatd.results(chat.id, "start_workspace")
        value = _value(result)
        assert value["started"] is True and value["no_build"] is True, value
        assert "build_id" not in value and value["agent_status"] == expected[name]
        assert value["workspace_name"] == name
        latest = await chatd.graph.workspace_store.latest_build(ws.id)
        assert latest is not None and latest.id == build.id  # no start requested
    [*_, twins_result] = await chatd.results(chat.id, "start_workspace")
    assert "multiple agents" in _value(twins_result)["agent_error"]
    assert chatd.dialer.calls == []


async def test_sw7_start_on_newer_template_version_reports_the_update(chatd: Chatd) -> None:
    """SW-7: the start build uses the template's active version, which differs from the
    previous build's → ``updated_to_active_version``, ``update_reason`` and a message."""
    chatd.add_inert_backends()
    source = template_source("bare", backend="agentless")
    bare = await chatd.push_template(source)
    ws, first = await chatd.workspace_from(bare, "old-version")
    await chatd.stop_workspace(ws.id)
    await chatd.push_template(source.replace("A Python project", "A newer Python project"))
    chatd.start_worker()
    chat = await chatd.new_chat(
        "s", script_model([Call("start_workspace", {}), Say("k")]), workspace_id=ws.id
    )
    chat = await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "start_workspace")
    value = _value(result)
    assert value["started"] is True and value["build_id"] != str(first.id)
    assert value["updated_to_active_version"] is True
    assert value["update_reason"] == "template requires active versions"
    assert "active version" in value["message"]
    new = await chatd.graph.workspace_store.get_build(uuid.UUID(value["build_id"]))
    assert new.template_version_id != first.template_version_id
    # control: a start on the same version reports no update
    await chatd.stop_workspace(ws.id)
    chatd.models[chat.id] = script_model([Call("start_workspace", {}), Say("k")])
    await chatd.send(chat.id, "again")
    await chatd.wait_status(chat.id)
    [*_, again] = await chatd.results(chat.id, "start_workspace")
    assert _value(again)["build_id"] and "updated_to_active_version" not in _value(again)


async def test_sw12_rejected_start_request_returns_the_servers_message(chatd: Chatd) -> None:
    """SW-12: the start request is rejected (tether: a Conflict from the workspace service,
    here because a stop build is still ``canceling``) → an error result carrying the
    service's message; nothing is bound."""
    chatd.add_inert_backends()
    bare = await chatd.push_template(template_source("bare", backend="agentless"))
    ws, running = await chatd.workspace_from(bare, "stuck")
    await chatd.pause_provisioner()
    stop = await chatd.make_canceling(await chatd.transition(ws.id, Transition.STOP))
    chatd.start_worker()
    chat = await chatd.new_chat(
        "s", script_model([Call("start_workspace", {}), Say("k")]), workspace_id=ws.id
    )
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    [result] = await chatd.results(chat.id, "start_workspace")
    assert result["is_error"] and result["error_code"] == "conflict", result
    assert f"build #{stop.build_number} (stop) is still canceling" in result["result"]
    latest = await chatd.graph.workspace_store.latest_build(ws.id)
    assert latest is not None and latest.id == stop.id  # no start build
    assert chat.build_id is None and running.id != stop.id


async def test_e2e3_create_mid_chat_binds_workspace_and_build_before_the_build_ends(
    chatd: Chatd,
) -> None:
    """E2E-3: the model creates a workspace mid-chat: ``workspace_id`` and ``build_id`` are
    on the chat row (and published) while the build is still pending — observed with the
    provisioner paused — and the agent is bound on first use."""
    await chatd.pause_provisioner()
    model = script_model(
        [_create(chatd.template_id), Call("execute", {"command": "echo hi"}), Say("done")]
    )
    chat = await chatd.new_chat("build me a box", model)
    events = chatd.record_events(chat.id)
    chatd.start_worker()

    async def bound() -> Any:
        row = await chatd.chats.get(chat.id)
        return row if row.build_id is not None else None

    row = await _poll(bound, "the new build to be bound")
    assert row.workspace_id is not None and row.agent_id is None
    assert row.status is ChatStatus.RUNNING
    build = await chatd.graph.workspace_store.get_build(row.build_id)
    assert build.status is JobStatus.PENDING and build.workspace_id == row.workspace_id
    assert any(e.event == "status" and e.data.get("build_id") == str(row.build_id) for e in events)
    chatd.resume_provisioner()
    chat = await chatd.wait_status(chat.id, timeout=60)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    [executed] = await chatd.results(chat.id, "execute")
    assert _value(executed)["success"] is True
    [agent] = await chatd.graph.agents.latest_build_agents(row.workspace_id)
    assert (chat.workspace_id, chat.build_id, chat.agent_id) == (
        row.workspace_id,
        row.build_id,
        agent.id,
    )


async def test_wk7_running_chat_keeps_its_workspace_ttl_moving(chatd: Chatd) -> None:
    """WK-7: the worker records workspace usage for running chats (at claim and with every
    heartbeat, 0.2 s here): a chat workspace with a 1.5 s TTL stays up through a 3 s
    command and its ``last_used_at`` moves; once the chat is idle the TTL stops it."""
    chatd.graph.settings.chat_workspace_ttl_ms = 1500
    chatd.start_worker()
    model = script_model(
        [
            _create(chatd.template_id, name="short-lived"),
            Call("execute", {"command": "sleep 3; echo survived", "timeout": "20s"}),
            Say("done"),
        ]
    )
    chat = await chatd.run_chat("long command", model, timeout=60)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    assert chat.workspace_id is not None
    [executed] = await chatd.results(chat.id, "execute")
    value = _value(executed)
    assert value["success"] is True and "survived" in value["output"]
    ws = await chatd.graph.workspace_store.get(chat.workspace_id)
    assert ws.ttl_ms == 1500
    assert (ws.last_used_at - ws.created_at).total_seconds() >= 2.5
    latest = await chatd.graph.workspace_store.latest_build(ws.id)
    assert latest is not None and latest.transition is Transition.START  # never stopped
    agent = await chatd.graph.agents.get(chat.agent_id)  # type: ignore[arg-type]
    assert agent.lifecycle_state is Lifecycle.READY

    async def stopped_by_ttl() -> bool:  # control: without a running chat the TTL fires
        build = await chatd.graph.workspace_store.latest_build(ws.id)
        return build is not None and build.transition is Transition.STOP

    await _poll(stopped_by_ttl, "the idle workspace to be stopped by its TTL", timeout=15)
