"""``follow_chat`` against races a socket test cannot time: events published while the
subscriber is reading the database must arrive exactly once, in id order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tether.chatd.follow import Outgoing, Pacing, follow_chat, follow_chat_batches
from tether.chatd.relay import RESYNC
from tether.chatd.stream import ChatStreamHub, StreamEvent, parse_event_id
from tether.clock import SystemClock
from tether.db.chats import ChatStore
from tether.db.users import UserStore
from tether.domain.chat import Chat, StoredMessage


class RacingStore(ChatStore):
    """A real store that runs ``during_read`` right after its first history read returns,
    i.e. while the follower is between its database catch-up and the hub buffer."""

    def __init__(self, engine: AsyncEngine, during_read: Any) -> None:
        super().__init__(engine, SystemClock())
        self._during_read = during_read

    async def messages(
        self, chat_id: uuid.UUID, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        rows = await super().messages(chat_id, after_seq=after_seq, limit=limit)
        if self._during_read is not None:
            hook, self._during_read = self._during_read, None
            await hook()
        return rows


async def _collect(
    store: ChatStore, hub: ChatStreamHub, chat_id: uuid.UUID, n: int
) -> list[Outgoing]:
    """Events with ids until ``n`` arrived, plus whatever comes in the next few polls
    (a duplicate would show up there)."""
    out: list[Outgoing] = []
    loop = asyncio.get_running_loop()
    settle_until: float | None = None

    async def stop() -> bool:
        return settle_until is not None and loop.time() > settle_until

    async with asyncio.timeout(5):
        async for item in follow_chat(store, hub, chat_id, poll_s=0.05, should_stop=stop):
            if item.id is not None:
                out.append(item)
            if len(out) >= n and settle_until is None:
                settle_until = loop.time() + 0.2
    return out


async def _chat(engine: AsyncEngine) -> tuple[ChatStore, uuid.UUID]:
    users = UserStore(engine, SystemClock())
    user = await users.create_user("alice")
    store = ChatStore(engine, SystemClock())
    chat = await store.create(
        owner_id=user.id, title="t", first_message=[{"type": "text", "text": "hi"}]
    )
    return store, chat.id


async def test_event_published_during_catch_up_arrives_once(sqlite_engine: AsyncEngine) -> None:
    plain, chat_id = await _chat(sqlite_engine)
    hub = ChatStreamHub()
    hub.publish_message((await plain.messages(chat_id))[0])
    hub.publish(chat_id, "message_part", {"text": "before"})

    async def race() -> None:  # in the buffer AND in the live queue
        hub.publish(chat_id, "message_part", {"text": "during"})

    store = RacingStore(sqlite_engine, race)
    got = await _collect(store, hub, chat_id, 3)
    assert [(o.id, o.event) for o in got] == [
        ("1.0", "message"),
        ("1.1", "message_part"),
        ("1.2", "message_part"),
    ]


async def test_wk5_message_persisted_during_catch_up_comes_once_before_its_events(
    sqlite_engine: AsyncEngine,
) -> None:
    """A message persisted *and* published locally while the follower reads the database
    arrives once (WK-5: the database catch-up/poll does not repeat it), before its events."""
    plain, chat_id = await _chat(sqlite_engine)
    hub = ChatStreamHub()
    hub.publish_message((await plain.messages(chat_id))[0])

    async def race() -> None:  # the hub's base moves past what the follower has read
        stored = await plain.append_message(
            chat_id, role="assistant", parts=[{"type": "text", "text": "r"}]
        )
        hub.publish_message(stored)
        hub.publish(chat_id, "message_part", {"text": "next"})

    store = RacingStore(sqlite_engine, race)
    got = await _collect(store, hub, chat_id, 3)
    assert [(o.id, o.event) for o in got] == [
        ("1.0", "message"),
        ("2.0", "message"),
        ("2.1", "message_part"),
    ]
    ids = [parse_event_id(o.id) for o in got]
    assert ids == sorted(ids)


async def test_wk5_live_subscriber_gets_a_locally_published_message_exactly_once(
    sqlite_engine: AsyncEngine,
) -> None:
    """WK-5: a subscriber is live; the worker persists a message and publishes it locally.
    It arrives once — the database polls that follow (every 50 ms, 250 ms watched) do not
    deliver it again."""
    store, chat_id = await _chat(sqlite_engine)
    hub = ChatStreamHub()
    hub.publish_message((await store.messages(chat_id))[0])
    loop = asyncio.get_running_loop()
    settle_until: float | None = None
    out: list[Outgoing] = []

    async def stop() -> bool:
        return settle_until is not None and loop.time() > settle_until

    async with asyncio.timeout(5):
        async for item in follow_chat(store, hub, chat_id, poll_s=0.05, should_stop=stop):
            out.append(item)
            if item.id == "1.0":  # caught up and live: the worker's turn now persists
                stored = await store.append_message(
                    chat_id, role="assistant", parts=[{"type": "text", "text": "local"}]
                )
                hub.publish_message(stored)
            if item.id == "2.0" and settle_until is None:
                settle_until = loop.time() + 0.25
    assert [o.id for o in out if o.event == "message"] == ["1.0", "2.0"], out


class CountingStore(ChatStore):
    """A real store that counts the follower's database reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, SystemClock())
        self.reads = 0

    async def messages(
        self, chat_id: uuid.UUID, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        self.reads += 1
        return await super().messages(chat_id, after_seq=after_seq, limit=limit)

    async def get(self, chat_id: uuid.UUID) -> Chat:
        self.reads += 1
        return await super().get(chat_id)


async def _reads_while_idle(
    engine: AsyncEngine, pacing: Pacing, seconds: float, *, snapshot: bool = False
) -> tuple[int, list[Outgoing]]:
    """Database reads of a follower of an idle chat in ``seconds`` after it caught up."""
    plain, chat_id = await _chat(engine)
    store = CountingStore(engine)
    hub = ChatStreamHub()
    loop = asyncio.get_running_loop()
    out: list[Outgoing] = []
    first = await plain.get(chat_id) if snapshot else None
    batches = follow_chat_batches(store, hub, chat_id, pacing=pacing, snapshot=first)
    async with contextlib.aclosing(batches):
        caught_up = await anext(batches)
        out.extend(caught_up)
        at_start = store.reads
        until = loop.time() + seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                async for batch in batches:
                    out.extend(batch)
    return store.reads - at_start, out


async def test_stream_polls_the_database_every_poll_s_where_another_process_may_change_the_chat(
    sqlite_engine: AsyncEngine,
) -> None:
    """No complete event source (PostgreSQL without a relay): the 50 ms poll runs (two reads
    each); 0.6 s gives about 24 reads."""
    reads, _ = await _reads_while_idle(
        sqlite_engine, Pacing(poll_s=0.05, fallback_poll_s=60.0, complete=None), 0.6
    )
    assert reads >= 8


async def test_stream_with_a_complete_event_source_does_not_poll_while_idle(
    sqlite_engine: AsyncEngine,
) -> None:
    """Every change reaches this process's hub (one SQLite process; a listening relay): an
    idle stream reads nothing until the fallback poll. The old behaviour (a poll every
    ``poll_s``) would read about 24 times in this window."""
    pacing = Pacing(poll_s=0.05, fallback_poll_s=60.0, complete=lambda: True)
    reads, _ = await _reads_while_idle(sqlite_engine, pacing, 0.6)
    assert reads == 0


async def test_the_fallback_poll_still_repairs_a_change_the_hub_never_saw(
    sqlite_engine: AsyncEngine,
) -> None:
    """WK-6 with a complete source: a message persisted without a hub event (it should not
    happen) still arrives, at the fallback poll."""
    store, chat_id = await _chat(sqlite_engine)
    hub = ChatStreamHub()
    pacing = Pacing(poll_s=0.01, fallback_poll_s=0.2, complete=lambda: True)
    got: list[Outgoing] = []
    async with asyncio.timeout(5):
        batches = follow_chat_batches(store, hub, chat_id, pacing=pacing)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                got.extend(batch)
                if any(o.id == "1.0" for o in batch):
                    await store.append_message(
                        chat_id, role="assistant", parts=[{"type": "text", "text": "unseen"}]
                    )
                if any(o.id == "2.0" for o in batch):
                    break
    assert [o.id for o in got if o.event == "message"] == ["1.0", "2.0"]


async def test_a_resync_re_reads_the_database_at_once_with_a_complete_source(
    sqlite_engine: AsyncEngine,
) -> None:
    """The relay lost events (RESYNC): the stream re-reads now, not at the fallback poll."""
    store, chat_id = await _chat(sqlite_engine)
    hub = ChatStreamHub()
    pacing = Pacing(poll_s=0.05, fallback_poll_s=60.0, complete=lambda: True)
    got: list[Outgoing] = []
    async with asyncio.timeout(5):
        batches = follow_chat_batches(store, hub, chat_id, pacing=pacing)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                got.extend(batch)
                if any(o.id == "1.0" for o in batch):  # subscribed and caught up
                    queue = next(iter(hub._state(chat_id).subscribers))
                    await store.append_message(
                        chat_id, role="assistant", parts=[{"type": "text", "text": "remote"}]
                    )
                    queue.put_nowait(StreamEvent(0, 0, RESYNC, {}))
                if any(o.id == "2.0" for o in batch):
                    break
    assert [o.id for o in got if o.event == "message"] == ["1.0", "2.0"]


async def test_a_snapshot_replaces_the_first_status_read(sqlite_engine: AsyncEngine) -> None:
    """The route's chat row is the first status: opening reads the history only."""
    plain, chat_id = await _chat(sqlite_engine)
    store = CountingStore(sqlite_engine)
    hub = ChatStreamHub()
    pacing = Pacing(poll_s=60.0, fallback_poll_s=60.0, complete=lambda: True)
    batches = follow_chat_batches(
        store, hub, chat_id, pacing=pacing, snapshot=await plain.get(chat_id)
    )
    async with contextlib.aclosing(batches):
        first = await anext(batches)
    assert [(o.id, o.event) for o in first] == [("1.0", "message"), (None, "status")]
    assert first[1].data == {"status": "pending", "last_error": None, "last_error_code": None}
    assert store.reads == 1


async def test_a_burst_comes_as_one_batch(sqlite_engine: AsyncEngine) -> None:
    """Events published together are sent together (one chunk, one write), in id order."""
    store, chat_id = await _chat(sqlite_engine)
    hub = ChatStreamHub()
    hub.publish_message((await store.messages(chat_id))[0])
    pacing = Pacing(poll_s=60.0, fallback_poll_s=60.0, complete=lambda: True)
    async with asyncio.timeout(5):
        batches = follow_chat_batches(store, hub, chat_id, pacing=pacing)
        async with contextlib.aclosing(batches):
            await anext(batches)
            for i in range(5):
                hub.publish(chat_id, "message_part", {"text": str(i)})
            burst = await anext(batches)
    assert [o.id for o in burst] == ["1.1", "1.2", "1.3", "1.4", "1.5"]
