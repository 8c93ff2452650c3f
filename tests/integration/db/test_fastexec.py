"""The warm turn's prebuilt statements on SQLite's connection directly (db/fastexec.py,
issue #12), on both dialects (PostgreSQL runs them through SQLAlchemy): the rows come back
as SQLAlchemy returns them, every statement is still seen by the engine's statement
listeners (``StatementCounter``), a unique-key clash is still SQLAlchemy's
``IntegrityError`` (``append_message`` retries on it), and the statements join the
caller's transaction (a rollback undoes them)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import SystemClock
from tether.db import chatrows
from tether.db.chats import ChatStore
from tether.db.compactions import CompactionStore, UsageRow
from tether.db.engine import StatementCounter
from tether.db.fastexec import FastStatement
from tether.db.tables import chat_usage
from tether.db.users import UserStore
from tether.ids import new_id

TEXT = [{"type": "text", "text": 'hï "there"'}]


async def _chat(engine: AsyncEngine) -> tuple[ChatStore, Any]:
    owner = await UserStore(engine, SystemClock()).create_user("bob", "member")
    store = ChatStore(engine, SystemClock())
    return store, await store.create(owner_id=owner.id, title="c", first_message=TEXT)


async def test_fast_rows_are_sqlalchemys_rows(engine: AsyncEngine) -> None:
    store, chat = await _chat(engine)
    fast_get = FastStatement(chatrows._GET_CHAT)
    async with engine.connect() as conn:
        theirs = (await conn.execute(chatrows._GET_CHAT, {"p_id": chat.id})).one()
        ours = await fast_get.one(conn, {"p_id": chat.id})
        assert await fast_get.first(conn, {"p_id": new_id()}) is None
        with pytest.raises(sa.exc.NoResultFound):
            await fast_get.one(conn, {"p_id": new_id()})
    assert ours._fields == tuple(theirs._fields)
    assert tuple(ours) == tuple(theirs)
    assert [type(v) for v in ours] == [type(v) for v in theirs]
    # the message the fast INSERT … RETURNING gave is the row a SELECT reads back
    message = await store.append_message(chat.id, role="assistant", parts=TEXT, model="m")
    assert (await store.messages(chat.id))[-1] == message
    assert message.parts == TEXT and message.seq == 2


async def test_every_fast_statement_is_counted(engine: AsyncEngine) -> None:
    """Fails if the fast path bypasses the engine's listeners: the counter sees each of
    the warm turn's statements, with its SQL text."""
    store, chat = await _chat(engine)
    contexts: list[Any] = []

    def on_execute(_c: Any, _cur: Any, _st: str, _p: Any, context: Any, _many: bool) -> None:
        contexts.append(context)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    with StatementCounter(engine) as counter, counter.measure() as m:
        worker = new_id()
        (claimed,) = await store.claim_turns(worker, limit=1)
        await store.append_message(chat.id, role="assistant", parts=TEXT)
        usage = [UsageRow(chat.id, "m", 3, 1, None, SystemClock().now(), 1, chat.owner_id)] * 2
        await CompactionStore(engine, SystemClock()).record_usages(usage)
        await store.finish_turn(chat.id, worker)
    sa.event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
    assert claimed.chat.id == chat.id and claimed.last_seq == 1
    expected = ["UPDATE chats SET", "INSERT INTO chat_messages", "INSERT INTO chat_usage"]
    expected.append("UPDATE chats SET")
    assert len(m.statements) == len(expected), m.statements
    assert all(e in s for e, s in zip(expected, m.statements, strict=True)), m.statements
    if engine.dialect.name == "sqlite":  # they took the fast path (no execution context)
        assert contexts == [None] * 4
    async with engine.connect() as conn:
        n = await conn.scalar(sa.select(sa.func.count()).select_from(chat_usage))
    assert n == 2


async def test_a_unique_clash_is_sqlalchemys_integrity_error(engine: AsyncEngine) -> None:
    _, chat = await _chat(engine)
    values = {
        "p_id": new_id(),
        "p_chat_id": chat.id,
        "p_role": "user",
        "p_parts": TEXT,
        "p_visibility": "both",
        "p_model": None,
        "p_created_at": SystemClock().now(),
    }
    async with engine.begin() as conn:
        await chatrows._INSERT_MESSAGE_FAST.one(conn, values)
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await chatrows._INSERT_MESSAGE_FAST.one(conn, values)


async def test_fast_statements_join_the_callers_transaction(engine: AsyncEngine) -> None:
    store, chat = await _chat(engine)
    with pytest.raises(RuntimeError, match="after the insert"):
        async with engine.begin() as conn:
            await store.insert_message(conn, chat.id, TEXT)
            raise RuntimeError("after the insert")
    assert [m.seq for m in await store.messages(chat.id)] == [1]
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
