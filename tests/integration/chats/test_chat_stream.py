"""The chat SSE stream over a real socket: live delivery, resume without loss or
duplicates (compared with an uninterrupted subscriber), DB polling, keep-alives."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import sqlalchemy as sa
from chat_env import ChatEnv, Collector, FakeWorker, has_status

from tether.chatd.stream import parse_event_id
from tether.domain.chat import ChatStatus
from tether.ids import new_id


def _key(event_id: str) -> tuple[int, int]:
    return parse_event_id(event_id)


async def test_stream_sends_history_status_and_live_events(
    env: ChatEnv, worker: FakeWorker
) -> None:
    chat = await env.alice.chats.create("hello")
    sub = Collector.start(env.alice.chats, chat.id)
    # snapshot: the persisted user message, then the status (no id: it is state)
    evs = await sub.wait_for(lambda e: len(e) >= 2)
    assert (evs[0].event, evs[0].id, evs[0].data["seq"]) == ("message", "1.0", 1)
    assert (evs[1].event, evs[1].id, evs[1].data["status"]) == ("status", None, "pending")

    await worker.claim()
    worker.part(chat.id, "Hel")
    worker.part(chat.id, "lo!")
    stored = await worker.reply(chat.id, "Hello!")
    await worker.finish(chat.id)
    await sub.wait_for(has_status(ChatStatus.WAITING))
    await sub.stop()

    assert sub.with_ids() == [
        ("1.0", "message", evs[0].data),
        ("1.1", "status", {"status": "running"}),
        ("1.2", "message_part", {"type": "text", "text": "Hel"}),
        ("1.3", "message_part", {"type": "text", "text": "lo!"}),
        ("2.0", "message", sub.with_ids()[4][2]),
        ("2.1", "status", {"status": "waiting"}),
    ]
    assert sub.with_ids()[4][2]["id"] == str(stored.id)
    assert sub.with_ids()[4][2]["parts"] == [{"type": "text", "text": "Hello!"}]


async def test_user_messages_and_queue_updates_are_streamed(
    env: ChatEnv, worker: FakeWorker
) -> None:
    chat = await env.alice.chats.create("one")
    sub = Collector.start(env.alice.chats, chat.id)
    await sub.wait_for(lambda e: len(e) >= 2)
    await worker.claim()
    await env.alice.chats.send(chat.id, "queued one")
    evs = await sub.wait_for(lambda e: any(x.event == "queue_update" for x in e))
    update = next(x for x in evs if x.event == "queue_update")
    assert [q["parts"][0]["text"] for q in update.data["queued"]] == ["queued one"]
    await worker.finish(chat.id)  # promotes it
    evs = await sub.wait_for(lambda e: any(x.event == "message" and x.id == "2.0" for x in e))
    promoted = next(x for x in evs if x.id == "2.0")
    assert promoted.data["role"] == "user" and promoted.data["parts"][0]["text"] == "queued one"
    await sub.stop()


async def test_reconnect_with_last_event_id_loses_and_repeats_nothing(
    env: ChatEnv, worker: FakeWorker
) -> None:
    chat = await env.alice.chats.create("go")
    steady = Collector.start(env.alice.chats, chat.id)
    flaky = Collector.start(env.alice.chats, chat.id)
    await steady.wait_for(lambda e: len(e) >= 2)
    await flaky.wait_for(lambda e: len(e) >= 2)

    await worker.claim()
    for i in range(3):
        worker.part(chat.id, f"a{i}")
    await flaky.wait_for(lambda e: sum(x.event == "message_part" for x in e) >= 3)
    await flaky.stop()  # the connection drops mid-reply
    resume_from = flaky.events[-1].last_event_id
    assert resume_from == "1.4"

    for i in range(3, 6):  # published while the subscriber is away (still buffered)
        worker.part(chat.id, f"a{i}")
    resumed = Collector.start(env.alice.chats, chat.id, last_event_id=resume_from)
    await resumed.wait_for(lambda e: sum(x.event == "message_part" for x in e) >= 3)
    for i in range(6, 8):  # and after reconnecting
        worker.part(chat.id, f"a{i}")
    await worker.reply(chat.id, "a0..a7")
    await worker.finish(chat.id)
    for c in (steady, resumed):
        await c.wait_for(has_status(ChatStatus.WAITING))
    await steady.stop()
    await resumed.stop()

    stitched = flaky.with_ids() + resumed.with_ids()
    assert stitched == steady.with_ids()
    ids = [e[0] for e in stitched]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=_key)
    # the resumed connection starts with the status snapshot, never a replayed event
    assert resumed.events[0].event == "status" and resumed.events[0].id is None


async def test_reconnect_after_a_message_was_persisted_meanwhile(
    env: ChatEnv, worker: FakeWorker
) -> None:
    chat = await env.alice.chats.create("go")
    flaky = Collector.start(env.alice.chats, chat.id)
    await flaky.wait_for(lambda e: len(e) >= 2)
    await worker.claim()
    worker.part(chat.id, "x")
    await flaky.wait_for(lambda e: any(x.event == "message_part" for x in e))
    await flaky.stop()
    worker.part(chat.id, "y")  # superseded by the persisted message below
    await worker.reply(chat.id, "xy")
    worker.part(chat.id, "tool output")
    resumed = Collector.start(
        env.alice.chats, chat.id, last_event_id=flaky.events[-1].last_event_id
    )
    await resumed.wait_for(lambda e: any(x.event == "message_part" for x in e))
    await resumed.stop()
    got = [(e[0], e[1]) for e in resumed.with_ids()]
    # the reply comes from the database, then the event buffered after it; nothing twice
    assert got == [("2.0", "message"), ("2.1", "message_part")]
    assert resumed.with_ids()[0][2]["parts"] == [{"type": "text", "text": "xy"}]


async def test_resume_with_after_query_parameter(env: ChatEnv, worker: FakeWorker) -> None:
    chat = await env.alice.chats.create("go")
    await worker.claim()
    await worker.reply(chat.id, "r1")
    await worker.finish(chat.id)
    lines: list[str] = []
    async with env.alice.http.stream(
        "GET", f"/api/v1/chats/{chat.id}/stream", params={"after": "1.0"}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(5):
            async for line in r.aiter_lines():
                lines.append(line)
                if line.startswith("event: status"):
                    break
    assert "id: 1.0" not in lines  # the first message is before the resume point
    assert lines[:2] == ["id: 2.0", "event: message"]


async def test_wk6_stream_polls_the_database(env: ChatEnv) -> None:
    """Another replica runs the chat: nothing reaches this process's hub, the poll does.
    WK-6 (tether: a message missed locally comes from the stream's database poll — there
    is no separate durable-message cache), delivered once. Modelled as where nothing tells
    this process of another's changes (PostgreSQL without a relay): no complete source."""
    env.graph.chat_service.stream_poll_s = 0.05
    env.graph.chat_service.stream_complete = None
    chat = await env.alice.chats.create("go")
    sub = Collector.start(env.alice.chats, chat.id)
    await sub.wait_for(lambda e: len(e) >= 2)
    other_worker = new_id()
    await env.graph.chats.claim(other_worker, limit=1)  # no hub event
    await env.graph.chats.append_message(
        chat.id, role="assistant", parts=[{"type": "text", "text": "from elsewhere"}]
    )
    # one poll may find the message and the status change together, in either order
    evs = await sub.wait_for(
        lambda e: (
            any(x.id == "2.0" for x in e)
            and any(x.event == "status" and x.data["status"] == "running" for x in e)
        )
    )
    assert [x.data["parts"][0]["text"] for x in evs if x.id == "2.0"] == ["from elsewhere"]
    await env.graph.chats.finish_turn(chat.id, other_worker)
    await sub.wait_for(has_status(ChatStatus.WAITING, with_id=False))
    await sub.stop()
    messages = [e for e in sub.events if e.event == "message"]
    assert [m.id for m in messages] == ["1.0", "2.0"]


async def test_keepalive_and_disconnect_releases_the_subscription(env: ChatEnv) -> None:
    env.graph.chat_service.stream_ping_s = 0.1
    env.graph.chat_service.stream_poll_s = 0.05
    chat = await env.alice.chats.create("go")
    async with httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {env.alice.token}"}
    ) as http:
        async with http.stream("GET", f"/api/v1/chats/{chat.id}/stream") as r:
            async with asyncio.timeout(5):
                async for line in r.aiter_lines():
                    if line == ": ping":
                        break
    # the server notices the disconnect and drops its hub subscription
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while env.graph.hub._state(chat.id).subscribers:
        assert loop.time() < deadline, "the stream did not stop after the client left"
        await asyncio.sleep(0.02)


async def test_stream_of_unknown_chat_is_404(env: ChatEnv) -> None:
    r = await env.alice.http.get("/api/v1/chats/00000000-0000-0000-0000-000000000000/stream")
    assert r.status_code == 404


async def test_an_idle_stream_does_not_poll_where_every_change_reaches_this_process(
    env: ChatEnv,
) -> None:
    """One SQLite process, or PostgreSQL with the relay listening: an open stream of an idle
    chat reads neither its history nor its row until the fallback poll. Before, it read
    both every ``stream_poll_s`` (here 50 ms: about 30 reads in the 0.8 s watched)."""
    service = env.graph.chat_service
    service.stream_poll_s = 0.05
    assert service.stream_complete is not None
    relay = None
    if service.stream_remote is not None:  # PostgreSQL: the server's background job
        relay = asyncio.create_task(service.stream_remote.run())
    try:
        await _idle_stream_reads_nothing(env)
    finally:
        if relay is not None:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay


async def _idle_stream_reads_nothing(env: ChatEnv) -> None:
    service = env.graph.chat_service
    assert service.stream_complete is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not service.stream_complete():  # the relay subscribes in the background
        assert loop.time() < deadline, "the stream relay never started listening"
        await asyncio.sleep(0.02)
    chat = await env.alice.chats.create("go")
    sub = Collector.start(env.alice.chats, chat.id)
    await sub.wait_for(lambda e: any(x.event == "status" for x in e))
    reads: list[str] = []

    def on_execute(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if "chat_messages" in statement or "FROM chats" in statement:
            reads.append(statement)

    sync_engine = env.graph.engine.sync_engine
    sa.event.listen(sync_engine, "before_cursor_execute", on_execute)
    try:
        await asyncio.sleep(0.8)
    finally:
        sa.event.remove(sync_engine, "before_cursor_execute", on_execute)
        await sub.stop()
    assert reads == []
