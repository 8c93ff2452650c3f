"""Issue #12: the statements of a warm turn (and of a stream's open) are built once
(db/prebuilt.py), so executing them constructs no SQL expression. Counted by SQLAlchemy's
own coercion entry point, which every ``select``/``where``/``values`` call goes through;
the old per-execution construction took ≈ 100 of them per turn."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import coercions

from tether.clock import SystemClock
from tether.db.agents import AgentStore
from tether.db.chats import ChatStore
from tether.db.compactions import CompactionStore, UsageRow
from tether.db.users import UserStore
from tether.db.workspaces import WorkspaceStore
from tether.domain.chat import ChatStatus
from tether.errors import Conflict
from tether.ids import new_id

TEXT = [{"type": "text", "text": "hi"}]


@contextlib.contextmanager
def _constructions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    calls: list[object] = []
    expect = coercions.expect

    def counted(role: object, element: object, *args: object, **kw: object) -> object:
        calls.append(element)
        return expect(role, element, *args, **kw)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(coercions, "expect", counted)
        yield calls


async def test_a_warm_turn_constructs_no_statement(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SystemClock()
    users = UserStore(engine, clock)
    owner = await users.create_user("bob", "member")
    _, token = await users.create_token(owner.id, "t")
    store = ChatStore(engine, clock)
    compactions = CompactionStore(engine, clock)
    workspaces = WorkspaceStore(engine, clock)
    agents = AgentStore(engine, clock)
    chat = await store.create(owner_id=owner.id, title="c", first_message=TEXT)
    worker = new_id()

    async def turn(n: int) -> None:
        [claimed] = await store.claim_turns(worker, limit=4, look_first=True)
        assert claimed.chat.id == chat.id and claimed.last_seq == 2 * n + 1
        assert await store.heartbeat(worker, [chat.id, new_id()]) == {chat.id}
        history = await store.messages(chat.id)
        assert [m.seq for m in history] == list(range(1, 2 * n + 2))
        assert [m.seq for m in await store.messages(chat.id, after_seq=1, limit=1)] == [2][:n]
        await store.append_message(chat.id, role="assistant", parts=TEXT)
        row = UsageRow(chat.id, "m", 10, 2, None, clock.now(), turn_seq=1, owner_id=owner.id)
        await compactions.record_usages([row])
        settled, promoted = await store.finish_turn(chat.id, worker)
        assert settled.status is ChatStatus.WAITING and promoted is None
        assert (await store.get(chat.id)).status is ChatStatus.WAITING
        assert await users.token_valid(token.id) is True
        await workspaces.touch_many([new_id(), new_id()])
        await agents.ping_many([new_id()])
        assert await workspaces.claim_job(worker) is None
        _, message, _, _ = await store.submit_user_message(chat.id, TEXT, max_queued=5)
        assert message is not None

    await turn(0)  # the first execution of each statement compiles it
    with _constructions(monkeypatch) as calls:
        await turn(1)
        await turn(2)
    # Every statement above is prebuilt (submit_user_message's since the send path's
    # change); the old construction per execution made ≈ 200 calls for these two turns.
    assert calls == []


async def test_the_finish_guard_still_binds_its_own_values(engine: AsyncEngine) -> None:
    """The prebuilt finish binds the chat, the worker and the error per call: another
    worker's finish is refused, and the error lands on the right chat only."""
    clock = SystemClock()
    owner = await UserStore(engine, clock).create_user("bob", "member")
    store = ChatStore(engine, clock)
    a = await store.create(owner_id=owner.id, title="a", first_message=TEXT)
    b = await store.create(owner_id=owner.id, title="b", first_message=TEXT)
    w1, w2 = new_id(), new_id()
    assert len(await store.claim(w1, limit=1)) == 1
    assert len(await store.claim(w2, limit=1)) == 1
    owned = {c.id: c.worker_id for c in (await store.get(a.id), await store.get(b.id))}
    mine, theirs = (a.id, b.id) if owned[a.id] == w1 else (b.id, a.id)
    with pytest.raises(Conflict):
        await store.finish_turn(theirs, w1)
    settled, _ = await store.finish_turn(mine, w1, error="boom", error_code="model_error")
    assert (settled.id, settled.status, settled.last_error) == (mine, ChatStatus.ERROR, "boom")
    other = await store.get(theirs)
    assert (other.status, other.worker_id, other.last_error) == (ChatStatus.RUNNING, w2, None)
