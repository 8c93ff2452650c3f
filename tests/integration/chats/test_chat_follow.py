"""``follow_chat`` against races a socket test cannot time: events published while the
subscriber is reading the database must arrive exactly once, in id order."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tether.chatd.follow import Outgoing, follow_chat
from tether.chatd.stream import ChatStreamHub, parse_event_id
from tether.clock import SystemClock
from tether.db.chats import ChatStore
from tether.db.users import UserStore
from tether.domain.chat import StoredMessage


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
