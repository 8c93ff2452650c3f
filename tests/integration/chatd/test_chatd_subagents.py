"""Subagents (SA-*): binding inheritance, no lifecycle tools for children, copied
instruction parts, and the ancestor header the agent receives."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from chatd_env import Chatd

from tether.chatd.binding import ANCESTOR_CHAT_IDS_HEADER
from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, Then, last_result, script_model
from tether.testing.models import ScriptedModel


def _wait_for_child(messages: list[Any]) -> Call:
    spawned = last_result(messages, "spawn_agent")
    assert spawned is not None
    return Call("wait_agent", {"chat_id": spawned.value["chat_id"], "timeout_seconds": 30})


async def test_sa1_sa3_sa5_sa6_child_inherits_binding_and_context(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    chatd.start_worker()
    parent = await chatd.new_chat(
        "bind",
        script_model([Call("execute", {"command": "true"}), Say("bound")], per_turn=True),
        workspace_id=ws.id,
    )
    parent = await chatd.wait_status(parent.id)
    assert parent.agent_id is not None
    context = [
        {
            "type": "context-file",
            "path": "AGENTS.md",
            "content": "be brief",
            "agent_id": str(parent.agent_id),
        }
    ]
    await chatd.chats.append_message(parent.id, role="system", parts=context, visibility="model")
    child_model = ScriptedModel().call("execute", command="echo child").say("child done")
    chatd.child_models[parent.id] = child_model.build()
    chatd.models[parent.id] = script_model(
        [
            Call("spawn_agent", {"prompt": "do the child task"}),
            Then(_wait_for_child),
            Say("parent done"),
        ]
    )
    await chatd.send(parent.id, "spawn")
    parent = await chatd.wait_status(parent.id, timeout=60)
    [spawned] = await chatd.results(parent.id, "spawn_agent")
    assert spawned["result"]["status"] == "pending"
    child_id = spawned["result"]["chat_id"]
    child = await chatd.chats.get(uuid.UUID(child_id))
    # SA-1: the triple is inherited; parent/root ids are set
    assert (child.workspace_id, child.build_id, child.agent_id) == (
        parent.workspace_id,
        parent.build_id,
        parent.agent_id,
    )
    assert child.parent_chat_id == parent.id and child.root_chat_id == parent.id
    # wait_agent returned the child's answer
    [waited] = await chatd.results(parent.id, "wait_agent")
    assert waited["result"]["status"] == "waiting" and waited["result"]["text"] == "child done"
    # SA-3: the child's tool call used the inherited agent (no re-bind)
    [executed] = await chatd.results(child.id, "execute")
    assert executed["result"]["output"].strip() == "child"
    # SA-5: the context-file messages (the AGENTS.md read on the parent's first turn, and
    # the one appended above) were copied before the prompt, and the child reused them
    msgs = await chatd.messages(child.id)
    copied = [m.parts for m in msgs if any(p.get("type") == "context-file" for p in m.parts)]
    assert copied[-1] == context and msgs[len(copied)].parts[0]["text"] == "do the child task"
    assert "be brief" in (child_model.requests[0].instructions or "")
    # SA-4: children get no lifecycle or subagent tools
    tools = set(child_model.requests[0].tool_names)
    assert "execute" in tools and not tools & {"create_workspace", "start_workspace", "spawn_agent"}
    # SA-6: the child's connection carries the parent id in the ancestor header ...
    child_dials = [h for _, h in chatd.dialer.calls if h.get("X-Tether-Chat-Id") == str(child.id)]
    assert child_dials and json.loads(child_dials[0][ANCESTOR_CHAT_IDS_HEADER]) == [str(parent.id)]
    # ... and the agent received it (its request log)
    log = chatd.graph.backends["local"].workspace_dir(ws.id) / "agent-main.log"
    for _ in range(100):
        if str(parent.id) in log.read_text() and f"chat={child.id}" in log.read_text():
            break
        await asyncio.sleep(0.05)
    lines = [line for line in log.read_text().splitlines() if f"chat={child.id}" in line]
    assert lines and str(parent.id) in lines[0]


async def test_sa4_child_of_unbound_parent_gets_no_workspace(chatd: Chatd) -> None:
    chatd.start_worker()
    parent = await chatd.new_chat("x", script_model([Say("hi")]))
    parent = await chatd.wait_status(parent.id)
    chatd.child_models[parent.id] = script_model([Call("list_dir", {"path": "."}), Say("no ws")])
    chatd.models[parent.id] = script_model(
        [Call("spawn_agent", {"prompt": "look"}), Then(_wait_for_child), Say("ok")]
    )
    await chatd.send(parent.id, "go")
    parent = await chatd.wait_status(parent.id, timeout=30)
    [spawned] = await chatd.results(parent.id, "spawn_agent")
    child_id = uuid.UUID(spawned["result"]["chat_id"])
    child = await chatd.chats.get(child_id)
    assert child.workspace_id is None and child.status is ChatStatus.WAITING
    [listed] = await chatd.results(child.id, "list_dir")
    assert listed["is_error"] and listed["error_code"] == "no_workspace"


async def test_message_and_close_agent(chatd: Chatd) -> None:
    chatd.start_worker()
    parent = await chatd.new_chat("x", script_model([Say("hi")]))
    parent = await chatd.wait_status(parent.id)
    chatd.child_models[parent.id] = script_model([Say("child reply")])

    def message(messages: list[Any]) -> Call:
        spawned = last_result(messages, "spawn_agent")
        assert spawned is not None
        return Call("message_agent", {"chat_id": spawned.value["chat_id"], "message": "more"})

    def close(messages: list[Any]) -> Call:
        spawned = last_result(messages, "spawn_agent")
        assert spawned is not None
        return Call("close_agent", {"chat_id": spawned.value["chat_id"]})

    chatd.models[parent.id] = script_model(
        [
            Call("spawn_agent", {"prompt": "a"}),
            Then(_wait_for_child),
            Then(message),
            Then(close),
            Say("k"),
        ]
    )
    await chatd.send(parent.id, "go")
    parent = await chatd.wait_status(parent.id, timeout=30)
    [closed] = await chatd.results(parent.id, "close_agent")
    assert closed["result"]["closed"] is True
    [messaged] = await chatd.results(parent.id, "message_agent")
    child = await chatd.chats.get(uuid.UUID(messaged["result"]["chat_id"]))
    assert child.archived is True
    texts = [m.parts[0].get("text") for m in await chatd.messages(child.id) if m.role == "user"]
    assert texts[:2] == ["a", "more"]
