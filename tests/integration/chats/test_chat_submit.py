"""Store operations the chat service relies on, on both dialects: sending atomically
against the end of a turn, cancelling a pending chat, queue counts (WK-8)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import SystemClock
from tether.db.chatqueue import enqueue_in
from tether.db.chatrows import lock_chat_if
from tether.db.chats import ChatStore
from tether.db.users import UserStore
from tether.domain.chat import ChatStatus
from tether.errors import Conflict, QueueFull
from tether.ids import new_id


def text(t: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": t}]


async def _setup(engine: AsyncEngine) -> tuple[ChatStore, uuid.UUID]:
    user = await UserStore(engine, SystemClock()).create_user("alice")
    store = ChatStore(engine, SystemClock())
    chat = await store.create(owner_id=user.id, title="t", first_message=text("hi"))
    return store, chat.id


async def test_submit_idle_busy_and_queue_limit(engine: AsyncEngine) -> None:
    store, chat_id = await _setup(engine)
    # pending: queued (or joined with join_pending)
    chat, msg, queued, _ = await store.submit_user_message(chat_id, text("a"), max_queued=2)
    assert chat.status is ChatStatus.PENDING and msg is None and queued is not None
    chat, msg, queued, _ = await store.submit_user_message(
        chat_id, text("b"), max_queued=2, join_pending=True
    )
    assert msg is not None and msg.seq == 2 and queued is None
    worker = new_id()
    await store.claim(worker, limit=1)
    await store.submit_user_message(chat_id, text("c"), max_queued=2)
    with pytest.raises(QueueFull):
        await store.submit_user_message(chat_id, text("d"), max_queued=2)
    assert await store.queued_counts([chat_id]) == {chat_id: 2}
    chat, promoted = await store.finish_turn(chat_id, worker)
    assert chat.status is ChatStatus.PENDING and promoted is not None
    assert promoted.parts == text("a")
    # idle → persisted directly
    await store.claim(worker, limit=1)
    await store.finish_turn(chat_id, worker)  # promotes "c"
    await store.claim(worker, limit=1)
    chat, _ = await store.finish_turn(chat_id, worker)
    assert chat.status is ChatStatus.WAITING
    chat, msg, queued, _ = await store.submit_user_message(chat_id, text("e"), max_queued=2)
    assert chat.status is ChatStatus.PENDING and msg is not None and queued is None
    assert [m.parts[0]["text"] for m in await store.messages(chat_id)] == ["hi", "b", "a", "c", "e"]


async def test_cancel_pending(engine: AsyncEngine) -> None:
    store, chat_id = await _setup(engine)
    await store.submit_user_message(chat_id, text("queued"), max_queued=5)
    chat, promoted = await store.cancel_pending(chat_id)
    assert chat.status is ChatStatus.PENDING and promoted is not None
    chat, promoted = await store.cancel_pending(chat_id)
    assert chat.status is ChatStatus.WAITING and promoted is None
    with pytest.raises(Conflict):
        await store.cancel_pending(chat_id)


async def test_send_racing_the_end_of_a_turn_never_strands_a_message(
    engine: AsyncEngine,
) -> None:
    """Whichever commits first, the message ends up in the history (or is the pending
    promoted one) — never queued on an idle chat."""
    store, chat_id = await _setup(engine)
    for i in range(10):
        worker = new_id()
        assert await store.claim(worker, limit=1)
        results = await asyncio.gather(
            store.finish_turn(chat_id, worker),
            store.submit_user_message(chat_id, text(f"m{i}"), max_queued=20),
        )
        chat = await store.get(chat_id)
        assert chat.status is ChatStatus.PENDING, results
        assert await store.queued_counts([chat_id]) == {}
    texts = [m.parts[0]["text"] for m in await store.messages(chat_id)]
    assert texts == ["hi"] + [f"m{i}" for i in range(10)]


async def test_a_finish_waiting_on_a_send_that_queues_promotes_its_message(
    pg_engine: AsyncEngine,
) -> None:
    """PostgreSQL's one-statement finish (db/chatclaims.py): a send holds the chat row and
    queues a message; the finish that waited for that row must see the message and promote
    it — a READ COMMITTED ``NOT EXISTS`` looks at the queue as of before the wait and
    settles the chat past it (stranded on an idle chat)."""
    # PostgreSQL only: on SQLite (one writer) the finish cannot start while the send writes.
    engine = pg_engine
    store, chat_id = await _setup(engine)
    worker = new_id()
    assert await store.claim(worker, limit=1)
    async with engine.connect() as send, engine.connect() as watch:
        tx = await send.begin()
        assert await lock_chat_if(send, chat_id, [ChatStatus.RUNNING]) is not None
        await enqueue_in(send, chat_id, text("queued"), max_queued=5, now=SystemClock().now())
        finish = asyncio.create_task(store.finish_turn(chat_id, worker))
        async with asyncio.timeout(10):  # until the finish waits for the send's row lock
            while True:
                waiting = await watch.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
                await watch.rollback()  # the view is snapshotted once per transaction
                if waiting:
                    break
                assert not finish.done(), finish
                await asyncio.sleep(0.01)
        await tx.commit()
        chat, promoted = await asyncio.wait_for(finish, 10)
    assert promoted is not None and promoted.parts == text("queued")
    assert chat.status is ChatStatus.PENDING
    assert await store.queued_counts([chat_id]) == {}
