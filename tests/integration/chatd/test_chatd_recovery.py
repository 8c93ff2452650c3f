"""Issue #9 §7: after a shutdown (SIGTERM) or a crash mid-tool, every tool call in the stored
history has a result, and the next turn's model request is well-formed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

from chatd_env import Chatd
from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether.chatd import history
from tether.domain.chat import ChatStatus
from tether.ids import new_id
from tether.llm.scripted import Call, Say, script_model


def _recording(seen: list[list[pai.ModelMessage]]) -> FunctionModel:
    async def stream(messages: list[pai.ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        seen.append(list(messages))
        yield "resumed"

    def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        raise AssertionError("the turn runner streams")

    return FunctionModel(respond, stream_function=stream, model_name="recording")


def _returns(messages: list[pai.ModelMessage], tool: str) -> list[pai.ToolReturnPart]:
    return [
        p
        for m in messages
        if isinstance(m, pai.ModelRequest)
        for p in m.parts
        if isinstance(p, pai.ToolReturnPart) and p.tool_name == tool
    ]


async def test_shutdown_mid_tool_stores_an_interrupted_result(chatd: Chatd) -> None:
    await chatd.pause_provisioner()  # the build stays pending: create_workspace is in flight
    chatd.start_worker()
    model = script_model(
        [Call("create_workspace", {"template_id": str(chatd.template_id)}), Say("never")]
    )
    chat = await chatd.new_chat("go", model)
    for _ in range(1000):
        msgs = await chatd.messages(chat.id)
        if any(p.get("type") == "tool-call" for m in msgs for p in m.parts):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("create_workspace was never called")
    await chatd.stop_worker()  # what SIGTERM does
    row = await chatd.chats.get(chat.id)
    assert row.status is ChatStatus.PENDING
    [result] = await chatd.results(chat.id, "create_workspace")
    assert result["error_code"] == "interrupted"
    assert result["result"] == f"interrupted: {history.LOST_ON_SHUTDOWN}"
    # the next turn (any replica) sends a valid request and adds no second result
    seen: list[list[pai.ModelMessage]] = []
    chatd.models[chat.id] = _recording(seen)
    chatd.start_worker()
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING
    [request] = seen
    assert len(_returns(request, "create_workspace")) == 1
    assert len(await chatd.results(chat.id, "create_workspace")) == 1


async def test_first_turn_after_a_crash_closes_the_lost_call(chatd: Chatd) -> None:
    """A replica died (no shutdown code ran) with a call stored and no result: the worker
    that takes the chat over stores the interrupted result before calling its model."""
    chat = await chatd.chats.create(
        owner_id=chatd.owner.id, title="t", first_message=[{"type": "text", "text": "go"}]
    )
    dead = new_id()
    assert len(await chatd.chats.claim(dead, limit=1)) == 1
    await chatd.chats.append_message(
        chat.id,
        role="assistant",
        parts=[{"type": "tool-call", "tool_call_id": "lost-1", "tool_name": "execute"}],
    )
    old = chatd.graph.clock.now() - timedelta(seconds=60)
    await chatd.chats.set_fields(chat.id, heartbeat_at=old)
    seen: list[list[pai.ModelMessage]] = []
    chatd.models[chat.id] = _recording(seen)
    worker = chatd.start_worker()
    assert chat.id in await worker.sweep_once()
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING
    [result] = await chatd.results(chat.id, "execute")
    assert result["tool_call_id"] == "lost-1" and result["error_code"] == "interrupted"
    assert result["result"] == f"interrupted: {history.LOST_ON_TAKEOVER}"
    [request] = seen
    [ret] = _returns(request, "execute")
    assert ret.tool_call_id == "lost-1"
    roles = [m.role for m in await chatd.messages(chat.id)]
    assert roles == ["user", "assistant", "tool", "assistant"]


async def test_the_sweep_never_takes_over_its_own_live_turn(chatd: Chatd) -> None:
    """A late heartbeat of a loaded worker is not a dead worker: its own sweep keeps it."""
    await chatd.pause_provisioner()
    worker = chatd.start_worker(heartbeat_s=3600.0)
    model = script_model(
        [Call("create_workspace", {"template_id": str(chatd.template_id)}), Say("never")]
    )
    chat = await chatd.new_chat("go", model)
    for _ in range(1000):
        if chat.id in worker.running:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the turn never started")
    old = chatd.graph.clock.now() - timedelta(seconds=60)
    await chatd.chats.set_fields(chat.id, heartbeat_at=old)
    assert await worker.sweep_once() == []
    row = await chatd.chats.get(chat.id)
    assert row.status is ChatStatus.RUNNING and row.worker_id == worker.worker_id


async def test_a_chat_back_from_another_replica_is_scanned_after_its_clean_end(
    chatd: Chatd,
) -> None:
    """This worker ended the chat's turn with no call open, so its next turn scans only the
    later messages (``ChatState.clean_through``). Meanwhile another replica ran a turn and
    died mid-tool: the lost call lies after that point and is still closed."""
    # claims only when woken (never by a timed poll): the other replica claims the message
    worker = chatd.start_worker(poll_s=3600.0)
    chat = await chatd.new_chat("first", script_model([Say("done")]))
    chat = await chatd.wait_status(chat.id)
    for _ in range(1000):  # the turn task ends just after the status is written
        if chat.id not in worker.running:
            break
        await asyncio.sleep(0.01)
    state = worker.state(chat.id)
    last = max(m.seq for m in await chatd.messages(chat.id))
    assert state is not None and state.clean_through == last
    await chatd.chats.send_user_message(chat.id, [{"type": "text", "text": "second"}])
    dead = new_id()
    assert len(await chatd.chats.claim(dead, limit=1)) == 1
    await chatd.chats.append_message(
        chat.id,
        role="assistant",
        parts=[{"type": "tool-call", "tool_call_id": "lost-2", "tool_name": "execute"}],
    )
    seen: list[list[pai.ModelMessage]] = []
    chatd.models[chat.id] = _recording(seen)
    old = chatd.graph.clock.now() - timedelta(seconds=60)
    await chatd.chats.set_fields(chat.id, heartbeat_at=old)
    await worker.sweep_once()  # (or the worker's own sweep got there first)
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING
    assert worker.state(chat.id) is state  # the same state: the scan started after `last`
    [result] = await chatd.results(chat.id, "execute")
    assert result["tool_call_id"] == "lost-2"
    assert result["result"] == f"interrupted: {history.LOST_ON_TAKEOVER}"
    [request] = seen
    assert [r.tool_call_id for r in _returns(request, "execute")] == ["lost-2"]
