"""The chat HTTP API: create/list/get/history, access control, send/queue/interrupt,
validation. Streaming is in ``test_chat_stream.py``."""

from __future__ import annotations

import pytest
from chat_env import ChatEnv, FakeWorker

from tether.channels import chat_channel
from tether.domain.chat import ChatStatus
from tether.sdk.errors import ApiError


async def test_create_list_get_and_history(env: ChatEnv) -> None:
    api = env.alice.chats
    chat = await api.create("Please   fix the flaky test in tests/test_x.py " + "x" * 80)
    assert chat.status == "pending"
    assert chat.title.startswith("Please fix the flaky test") and len(chat.title) <= 60
    assert (chat.workspace_id, chat.build_id, chat.agent_id) == (None, None, None)
    assert chat.parent_chat_id is None and chat.queued == 0

    other = await api.create([{"type": "text", "text": "second"}], title="Mine", model="default")
    assert other.title == "Mine" and other.model == "default"

    listed = await api.list()
    assert {c.id for c in listed} == {chat.id, other.id}
    assert [c.id for c in await api.list(status="pending")] != []
    assert await api.list(status="running") == []

    got = await api.get(chat.id)
    assert got.id == chat.id and got.status == "pending"

    page = await api.messages(chat.id)
    assert [(m.seq, m.role) for m in page.messages] == [(1, "user")]
    assert page.messages[0].text == "Please   fix the flaky test in tests/test_x.py " + "x" * 80
    assert page.next_after_seq is None


async def test_history_is_paginated(env: ChatEnv) -> None:
    chat = await env.alice.chats.create("hi")
    for i in range(4):
        await env.graph.chats.append_message(
            chat.id, role="assistant", parts=[{"type": "text", "text": f"r{i}"}]
        )
    first = await env.alice.chats.messages(chat.id, limit=2)
    assert [m.seq for m in first.messages] == [1, 2] and first.next_after_seq == 2
    second = await env.alice.chats.messages(chat.id, after_seq=2, limit=2)
    assert [m.seq for m in second.messages] == [3, 4] and second.next_after_seq == 4
    last = await env.alice.chats.messages(chat.id, after_seq=4, limit=2)
    assert [m.seq for m in last.messages] == [5] and last.next_after_seq is None
    assert [m.seq for m in await env.alice.chats.all_messages(chat.id)] == [1, 2, 3, 4, 5]


async def test_create_binds_only_the_workspace_id_of_own_workspace(env: ChatEnv) -> None:
    ws = await env.workspace_of(env.alice.user)
    chat = await env.alice.chats.create("work here", workspace_id=ws.id)
    assert chat.workspace_id == ws.id
    assert chat.build_id is None and chat.agent_id is None
    row = await env.graph.chats.get(chat.id)
    assert (row.workspace_id, row.build_id, row.agent_id) == (ws.id, None, None)

    with pytest.raises(ApiError) as err:
        await env.bob.chats.create("steal", workspace_id=ws.id)
    assert err.value.status == 404
    assert await env.bob.chats.list() == []


async def test_other_members_chat_is_not_found_everywhere(env: ChatEnv) -> None:
    chat = await env.alice.chats.create("private")
    http = env.bob.http
    base = f"/api/v1/chats/{chat.id}"
    calls = [
        http.get(base),
        http.get(f"{base}/messages"),
        http.post(f"{base}/messages", json={"content": "hello"}),
        http.post(f"{base}/interrupt"),
        http.post(f"{base}/archive", json={"archived": True}),
        http.get(f"{base}/children"),
        http.get(f"{base}/queue"),
        http.get(f"{base}/stream"),
    ]
    for call in calls:
        r = await call
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"
    assert await env.bob.chats.list() == []
    # nothing happened to the chat
    assert [m.seq for m in (await env.alice.chats.messages(chat.id)).messages] == [1]
    assert (await env.alice.chats.get(chat.id)).archived is False


async def test_unauthenticated_is_401(env: ChatEnv) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.get("/api/v1/chats")
    assert r.status_code == 401


async def test_send_idle_makes_pending_and_busy_queues_up_to_20(
    env: ChatEnv, worker: FakeWorker
) -> None:
    api = env.alice.chats
    chat = await api.create("first")
    [claimed] = await worker.claim()
    assert claimed.id == chat.id
    await worker.reply(chat.id, "done")
    assert (await worker.finish(chat.id)).status is ChatStatus.WAITING

    sent = await api.send(chat.id, "second")  # idle → persisted, pending
    assert sent.queued is False and sent.queued_message is None
    assert sent.message is not None and sent.message.seq == 3 and sent.message.text == "second"
    assert sent.chat.status == "pending"

    await worker.claim()
    for i in range(20):  # running → queued
        r = await api.send(chat.id, f"q{i}")
        assert r.queued is True and r.message is None and r.queued_message is not None
    with pytest.raises(ApiError) as err:
        await api.send(chat.id, "one too many")
    assert (err.value.status, err.value.code) == (409, "queue_full")
    assert (await api.get(chat.id)).queued == 20
    assert [q.parts[0]["text"] for q in await api.queue(chat.id)][:2] == ["q0", "q1"]

    # the end of the turn promotes the oldest queued message
    after = await worker.finish(chat.id)
    assert after.status is ChatStatus.PENDING
    msgs = (await api.messages(chat.id)).messages
    assert msgs[-1].text == "q0" and msgs[-1].role == "user"
    assert (await api.get(chat.id)).queued == 19


async def test_send_to_errored_chat_clears_the_error(env: ChatEnv, worker: FakeWorker) -> None:
    chat = await env.alice.chats.create("first")
    await worker.claim()
    failed = await worker.finish(chat.id, error="provider down")
    assert failed.status is ChatStatus.ERROR
    assert (await env.alice.chats.get(chat.id)).last_error == "provider down"
    sent = await env.alice.chats.send(chat.id, "again")
    assert sent.chat.status == "pending" and sent.chat.last_error is None


async def test_send_with_interrupt_queues_and_interrupts(env: ChatEnv, worker: FakeWorker) -> None:
    api = env.alice.chats
    chat = await api.create("long task")
    await worker.claim()
    async with env.graph.bus.subscribe(chat_channel(chat.id)) as control:
        r = await api.send(chat.id, "stop, do this instead", busy="interrupt")
        assert r.queued is True and r.chat.status == "interrupting"
        assert await control.get(timeout=2) == {"type": "interrupt"}
    row = await env.graph.chats.get(chat.id)
    assert row.status is ChatStatus.INTERRUPTING and row.interrupt_requested
    # the worker persists the partial reply, then the queued message is promoted
    await worker.reply(chat.id, "partial")
    after = await worker.finish(chat.id)
    assert after.status is ChatStatus.PENDING
    texts = [m.text for m in (await api.messages(chat.id)).messages]
    assert texts == ["long task", "partial", "stop, do this instead"]


async def test_send_with_interrupt_to_unclaimed_chat_joins_its_history(env: ChatEnv) -> None:
    chat = await env.alice.chats.create("one")
    r = await env.alice.chats.send(chat.id, "two", busy="interrupt")
    assert r.queued is False and r.message is not None and r.chat.status == "pending"
    assert [m.text for m in (await env.alice.chats.messages(chat.id)).messages] == ["one", "two"]


async def test_interrupt_transitions(env: ChatEnv, worker: FakeWorker) -> None:
    api = env.alice.chats
    # pending, not claimed → waiting
    chat = await api.create("a")
    assert (await api.interrupt(chat.id)).status == "waiting"
    # idle → no-op
    assert (await api.interrupt(chat.id)).status == "waiting"
    # running → interrupting, and again → still interrupting
    await api.send(chat.id, "b")
    await worker.claim()
    assert (await api.interrupt(chat.id)).status == "interrupting"
    assert (await api.interrupt(chat.id)).status == "interrupting"
    assert (await env.graph.chats.get(chat.id)).interrupt_requested
    assert (await worker.finish(chat.id)).status is ChatStatus.WAITING
    # pending with a queued message → the queued message is promoted, still pending
    await api.send(chat.id, "c")
    queued = await api.send(chat.id, "d")
    assert queued.queued
    after = await api.interrupt(chat.id)
    assert after.status == "pending" and after.queued == 0
    texts = [m.text for m in (await api.messages(chat.id)).messages]
    assert texts[-2:] == ["c", "d"]


async def test_archive_and_children(env: ChatEnv) -> None:
    api = env.alice.chats
    chat = await api.create("parent")
    child = await env.graph.chats.create(
        owner_id=env.alice.user.id,
        title="sub",
        first_message=None,
        parent_chat_id=chat.id,
        root_chat_id=chat.id,
    )
    assert [c.id for c in await api.children(chat.id)] == [child.id]
    assert [c.id for c in await api.list()] == [chat.id]  # roots only
    archived = await api.archive(chat.id)
    assert archived.archived is True
    assert await api.list() == []
    assert [c.id for c in await api.list(archived=True)] == [chat.id]
    assert (await api.archive(chat.id, archived=False)).archived is False


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("", {}, "content"),
        ("", {"content": ""}, "content"),
        ("", {"content": "hi", "workspace_id": "nope"}, "workspace_id"),
        ("", {"content": [{"type": "tool-call", "tool_name": "x"}]}, "content[0].type"),
        ("", {"content": [{"type": "text"}]}, "content[0].text"),
        ("", {"content": "   "}, "content"),
        ("/{id}/messages", {"content": "hi", "busy": "bogus"}, "busy"),
        ("/{id}/messages", {"busy": "queue"}, "content"),
    ],
)
async def test_invalid_body_is_400_naming_the_field(
    env: ChatEnv, path: str, body: dict[str, object], field: str
) -> None:
    chat = await env.alice.chats.create("x")
    r = await env.alice.http.post("/api/v1/chats" + path.format(id=chat.id), json=body)
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["code"] == "invalid_input"
    assert data["details"]["field"].startswith(field), data
