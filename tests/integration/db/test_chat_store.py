"""Chat store on both dialects: claim (WK-1), heartbeat loss (WK-2), stale recovery (WK-3),
queue limits and promotion (WK-8), binding writes, compare-and-set status."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import SystemClock
from tether.db.chats import ChatStore
from tether.db.compactions import CompactionStore
from tether.db.users import UserStore
from tether.domain.chat import ChatStatus
from tether.errors import Conflict, QueueFull
from tether.ids import new_id

TEXT = [{"type": "text", "text": "hi"}]


async def _store(engine: AsyncEngine):
    owner = await UserStore(engine, SystemClock()).create_user("bob", "member")
    return ChatStore(engine, SystemClock()), owner


async def test_wk1_claim_oldest_first_and_never_twice(engine: AsyncEngine):
    store, owner = await _store(engine)
    chats = []
    for i in range(3):
        chats.append(await store.create(owner_id=owner.id, title=f"c{i}", first_message=TEXT))
        await asyncio.sleep(0.01)
    w1, w2 = new_id(), new_id()
    claimed = await store.claim(w1, limit=2)
    assert [c.id for c in claimed] == [chats[0].id, chats[1].id]
    assert all(c.status is ChatStatus.RUNNING and c.worker_id == w1 for c in claimed)
    assert all(c.heartbeat_at is not None for c in claimed)
    rest = await store.claim(w2, limit=10)
    assert [c.id for c in rest] == [chats[2].id]
    assert await store.claim(w2, limit=10) == []


async def test_wk1_concurrent_workers_never_claim_the_same_chat(engine: AsyncEngine):
    store, owner = await _store(engine)
    for i in range(8):
        await store.create(owner_id=owner.id, title=f"c{i}", first_message=TEXT)
    workers = [new_id() for _ in range(4)]
    results = await asyncio.gather(*(store.claim(w, limit=3) for w in workers))
    ids = [c.id for batch in results for c in batch]
    assert len(ids) == len(set(ids)) == 8


async def test_wk2_heartbeat_reports_lost_ownership(engine: AsyncEngine):
    store, owner = await _store(engine)
    chat = await store.create(owner_id=owner.id, title="c", first_message=TEXT)
    w1, w2 = new_id(), new_id()
    await store.claim(w1, limit=1)
    assert await store.heartbeat(w1, [chat.id]) == {chat.id}
    await store.release_worker(w1)
    await store.claim(w2, limit=1)
    assert await store.heartbeat(w1, [chat.id]) == set()  # taken over: cancel the local turn
    with pytest.raises(Conflict):
        await store.finish_turn(chat.id, w1)  # no final side effects for the old owner


async def test_wk3_stale_running_chats_return_to_pending(engine: AsyncEngine):
    store, owner = await _store(engine)
    chat = await store.create(owner_id=owner.id, title="c", first_message=TEXT)
    await store.claim(new_id(), limit=1)
    clock = SystemClock()
    assert await store.recover_stale(clock.now() - timedelta(minutes=5)) == []
    assert await store.recover_stale(clock.now() + timedelta(seconds=1)) == [chat.id]
    assert (await store.get(chat.id)).status is ChatStatus.PENDING


async def test_wk8_queue_limit_and_promotion(engine: AsyncEngine):
    store, owner = await _store(engine)
    chat = await store.create(owner_id=owner.id, title="c", first_message=TEXT)
    worker = new_id()
    await store.claim(worker, limit=1)
    with pytest.raises(Conflict):
        await store.send_user_message(chat.id, TEXT)  # busy: must be queued instead
    for i in range(20):
        await store.enqueue(chat.id, [{"type": "text", "text": f"q{i}"}], max_queued=20)
    with pytest.raises(QueueFull):
        await store.enqueue(chat.id, TEXT, max_queued=20)
    await store.append_message(chat.id, role="assistant", parts=[{"type": "text", "text": "a"}])
    finished, promoted = await store.finish_turn(chat.id, worker)
    assert finished.status is ChatStatus.PENDING
    assert promoted is not None and promoted.parts[0]["text"] == "q0"
    assert [m.role for m in await store.messages(chat.id)] == ["user", "assistant", "user"]
    assert [m.seq for m in await store.messages(chat.id)] == [1, 2, 3]
    assert len(await store.queued(chat.id)) == 19


async def test_finish_with_error_and_resend(engine: AsyncEngine):
    store, owner = await _store(engine)
    chat = await store.create(owner_id=owner.id, title="c", first_message=TEXT)
    worker = new_id()
    await store.claim(worker, limit=1)
    failed, _ = await store.finish_turn(chat.id, worker, error="provider down", error_code="x")
    assert failed.status is ChatStatus.ERROR and failed.last_error == "provider down"
    again, msg = await store.send_user_message(chat.id, TEXT)
    assert again.status is ChatStatus.PENDING and again.last_error is None and msg.seq == 2


async def test_status_compare_and_set(engine: AsyncEngine):
    store, owner = await _store(engine)
    chat = await store.create(owner_id=owner.id, title="c", first_message=None)
    assert chat.status is ChatStatus.WAITING
    with pytest.raises(Conflict):
        await store.transition(chat.id, ChatStatus.RUNNING)  # waiting → running is illegal
    await store.transition(chat.id, ChatStatus.PENDING)
    with pytest.raises(Conflict):
        await store.transition(chat.id, ChatStatus.INTERRUPTING)


async def test_binding_writes(engine: AsyncEngine):
    store, owner = await _store(engine)
    chat = await store.create(owner_id=owner.id, title="c", first_message=None)
    assert (chat.workspace_id, chat.build_id, chat.agent_id) == (None, None, None)


async def test_claim_turns_returns_each_chats_last_seq_and_compaction(engine: AsyncEngine):
    """The claim hands the worker what the turn would query next (the stream hub's base, the
    history cache's compaction check), each for its own chat — not another chat's, not 0."""
    store, owner = await _store(engine)
    compactions = CompactionStore(engine, SystemClock())
    busy = await store.create(owner_id=owner.id, title="busy", first_message=TEXT)
    for text in ("a", "b", "c"):
        parts = [{"type": "text", "text": text}]
        await store.append_message(busy.id, role="assistant", parts=parts)
    first = await compactions.record(
        busy.id, previous=None, through_seq=2, kind="compact", summary="s", carried={}
    )
    await compactions.record(
        busy.id, previous=first, through_seq=3, kind="compact", summary="s2", carried={}
    )
    await asyncio.sleep(0.01)
    fresh = await store.create(owner_id=owner.id, title="fresh", first_message=TEXT)
    claimed = await store.claim_turns(new_id(), limit=10, look_first=True)
    assert [(c.chat.id, c.last_seq, c.compaction_number) for c in claimed] == [
        (busy.id, 4, 2),
        (fresh.id, 1, 0),
    ]
    assert await store.claim_turns(new_id(), limit=10, look_first=True) == []


async def test_wk1_idle_claim_reads_without_a_write_transaction(engine: AsyncEngine):
    """The worker polls ``claim_turns`` (``look_first``) every ``worker_poll_s``: with
    nothing pending it is one read, never an UPDATE (no write lock on SQLite, no row locks
    on PostgreSQL)."""
    from tether.db.engine import StatementCounter

    store, owner = await _store(engine)
    chat = await store.create(owner_id=owner.id, title="c", first_message=TEXT)
    await store.claim(new_id(), limit=1)  # nothing pending from here on
    with StatementCounter(engine) as counter:
        with counter.measure() as idle:
            for _ in range(5):
                assert await store.claim_turns(new_id(), limit=10, look_first=True) == []
        assert idle.count == 5, idle.statements
        assert not idle.matching(r"^\s*UPDATE"), idle.statements
        # woken by a ``chats`` event (a chat is most likely pending): straight to the UPDATE
        with counter.measure() as woken:
            assert await store.claim_turns(new_id(), limit=10) == []
    assert woken.count == 1 and woken.matching(r"\bUPDATE chats\b"), woken.statements
    # a pending chat is still claimed at the next poll (the read sees it, the UPDATE takes it)
    later = await store.create(owner_id=owner.id, title="d", first_message=TEXT)
    claimed = await store.claim_turns(new_id(), limit=10, look_first=True)
    assert [c.chat.id for c in claimed] == [later.id]
    assert chat.id != later.id
