"""The worker side of the chat queue: claim pending chats (pending → running), keep
them with heartbeats, hand stale or released ones back, and finish a turn.

Claiming is one guarded statement: ``UPDATE … WHERE id IN (oldest pending) AND
status = 'pending' RETURNING id``; on PostgreSQL the inner select adds
``FOR UPDATE SKIP LOCKED`` (SQLAlchemy silently drops it on SQLite, where the single
writer makes the guard enough).

:class:`ChatWorkerOps` is a part of :class:`tether.db.chats.ChatStore` (a mixin over the
store's engine and clock)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock
from tether.db.chatqueue import promote_queued
from tether.db.chatrows import chat_from_row
from tether.db.engine import reading
from tether.db.fastexec import FastStatement
from tether.db.prebuilt import bound, bound_list
from tether.db.tables import chat_compactions, chat_messages, chat_queued_messages, chats
from tether.domain.chat import Chat, ChatStatus, StoredMessage
from tether.errors import Conflict


@dataclass(frozen=True)
class Claimed:
    """A chat a worker claimed, with what its turn would otherwise query first."""

    chat: Chat
    last_seq: int  # of its last message (0: none)
    compaction_number: int  # of its latest compaction (0: none)


_ACTIVE = [ChatStatus.RUNNING.value, ChatStatus.INTERRUPTING.value]
_SERIALIZATION_FAILURE = "40001"  # PostgreSQL's SQLSTATE
_PENDING = chats.c.status == ChatStatus.PENDING.value


def _claim(postgres: bool) -> sa.Update:
    oldest = (
        sa.select(chats.c.id)
        .where(_PENDING)
        .order_by(chats.c.updated_at)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
    )
    # Qualified by hand: SQLAlchemy renders RETURNING columns unqualified on SQLite,
    # where a bare ``id`` inside the subquery would mean the subquery's own table's.
    claimed_id: sa.ColumnClause[Any] = sa.literal_column("chats.id")
    last_seq = (
        sa.select(sa.func.coalesce(sa.func.max(chat_messages.c.seq), 0))
        .where(chat_messages.c.chat_id == claimed_id)
        .scalar_subquery()
        .label("last_seq")
    )
    compaction = (
        sa.select(sa.func.coalesce(sa.func.max(chat_compactions.c.number), 0))
        .where(
            chat_compactions.c.chat_id == claimed_id,
            chat_compactions.c.invalidated_at.is_(None),  # an edit dropped it
        )
        .scalar_subquery()
        .label("compaction_number")
    )
    if postgres:
        # A CTE is materialised once; an IN (… LIMIT n) subquery may be re-run by the
        # planner and claim more than n rows.
        picked = oldest.with_for_update(skip_locked=True).cte("picked")
        stmt = chats.update().where(chats.c.id == picked.c.id)
    else:
        stmt = chats.update().where(chats.c.id.in_(oldest.scalar_subquery()))
    # The claimed rows come back with RETURNING (no second SELECT).
    return (
        stmt.where(_PENDING)
        .values(
            status=ChatStatus.RUNNING.value,
            worker_id=bound(chats.c.worker_id),
            started_at=bound(chats.c.started_at),
            heartbeat_at=bound(chats.c.heartbeat_at),
            interrupt_requested=False,
            updated_at=bound(chats.c.updated_at),
        )
        .returning(*chats.c, last_seq, compaction)
    )


def _back_to_pending(*where: sa.ColumnElement[bool]) -> sa.Update:
    return (
        chats.update()
        .where(*where)
        .values(
            status=ChatStatus.PENDING.value,
            worker_id=None,
            updated_at=bound(chats.c.updated_at),
        )
        .returning(chats.c.id)
    )


_SETTLED = {
    "worker_id": None,
    "heartbeat_at": None,
    "interrupt_requested": False,
    "last_error": bound(chats.c.last_error),
    "last_error_code": bound(chats.c.last_error_code),
    "updated_at": bound(chats.c.updated_at),
}
_OURS = [
    chats.c.id == bound(chats.c.id),
    chats.c.status.in_(_ACTIVE),
    chats.c.worker_id == bound(chats.c.worker_id),
]
_STALE = [chats.c.status.in_(_ACTIVE), chats.c.heartbeat_at < bound(chats.c.heartbeat_at)]

# Built once (db/prebuilt.py): each warm turn claims, heartbeats and finishes its chat.
_ANY_PENDING = sa.select(chats.c.id).where(_PENDING).limit(1)
_CLAIM = {False: _claim(False), True: _claim(True)}  # by "is PostgreSQL"
_HEARTBEAT = (
    chats.update()
    .where(
        chats.c.id.in_(bound_list(chats.c.id, "ids")),
        chats.c.worker_id == bound(chats.c.worker_id),
        chats.c.status.in_(_ACTIVE),
    )
    .values(heartbeat_at=bound(chats.c.heartbeat_at))
    .returning(chats.c.id)
)
_RECOVER = {
    False: _back_to_pending(*_STALE),
    True: _back_to_pending(*_STALE, chats.c.id.not_in(bound_list(chats.c.id, "keep"))),
}  # by "keeps some"
_RELEASE = _back_to_pending(
    chats.c.worker_id == bound(chats.c.worker_id), chats.c.status.in_(_ACTIVE)
)
# The settle when nothing is queued (finish_turn; on PostgreSQL under REPEATABLE READ).
_SETTLE_IF_UNQUEUED = (
    chats.update()
    .where(
        *_OURS,
        # A parameter of its own (not p_id): PostgreSQL's text numbers each one.
        ~sa.exists().where(
            chat_queued_messages.c.chat_id == bound(chat_queued_messages.c.chat_id, "queued")
        ),
    )
    .values(status=bound(chats.c.status), **_SETTLED)
    .returning(*chats.c)
)
# A guarded no-op UPDATE (the same statement as chatrows.lock_chat_if's for these states).
_LOCK_OURS = chats.update().where(*_OURS).values(status=chats.c.status).returning(*chats.c)
_SETTLE = (
    chats.update()
    .where(chats.c.id == bound(chats.c.id))
    .values(status=bound(chats.c.status), **_SETTLED)
    .returning(*chats.c)
)
# The warm turn's (db/fastexec.py: SQLite runs them on its connection directly).
_CLAIM_FAST = {postgres: FastStatement(stmt) for postgres, stmt in _CLAIM.items()}
_SETTLE_IF_UNQUEUED_FAST = FastStatement(_SETTLE_IF_UNQUEUED)
_ANY_PENDING_FAST = FastStatement(_ANY_PENDING)


class ChatWorkerOps:
    _engine: AsyncEngine
    _clock: Clock

    async def claim(self, worker_id: uuid.UUID, *, limit: int) -> list[Chat]:
        return [c.chat for c in await self.claim_turns(worker_id, limit=limit)]

    async def claim_turns(
        self, worker_id: uuid.UUID, *, limit: int, look_first: bool = False
    ) -> list[Claimed]:
        """Claim up to ``limit`` pending chats (pending → running), each with the ``seq`` of
        its last message (the stream hub's base) and the number of its latest compaction
        (the turn's history cache checks it), in one guarded statement. With
        ``look_first`` (a timed poll, which almost always finds nothing) a read-only query
        looks for a pending chat first, so an idle poll takes no write transaction."""
        now = self._clock.now()
        if look_first:
            async with reading(self._engine) as conn:
                if await _ANY_PENDING_FAST.first(conn, {}) is None:
                    return []
        values = {
            "p_limit": limit,
            "p_worker_id": worker_id,
            "p_started_at": now,
            "p_heartbeat_at": now,
            "p_updated_at": now,
        }
        async with self._engine.begin() as conn:
            rows = await _CLAIM_FAST[conn.dialect.name == "postgresql"].all(conn, values)
        claimed = [
            Claimed(chat_from_row(r), int(r.last_seq or 0), int(r.compaction_number or 0))
            for r in rows
        ]
        # Ordered by creation, as the SELECT before RETURNING did.
        return sorted(claimed, key=lambda c: c.chat.created_at)

    async def heartbeat(self, worker_id: uuid.UUID, chat_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Refresh heartbeats; returns the ids this worker still owns."""
        if not chat_ids:
            return set()
        values = {
            "p_ids": list(chat_ids),
            "p_worker_id": worker_id,
            "p_heartbeat_at": self._clock.now(),
        }
        async with self._engine.begin() as conn:
            ids = (await conn.execute(_HEARTBEAT, values)).scalars().all()
        return set(ids)

    async def recover_stale(
        self, older_than: datetime, *, keep: Collection[uuid.UUID] = ()
    ) -> list[uuid.UUID]:
        """Running chats whose heartbeat is older than ``older_than`` go back to pending;
        ``keep`` are chats the caller knows alive (its own running turns)."""
        values: dict[str, Any] = {
            "p_heartbeat_at": older_than,
            "p_updated_at": self._clock.now(),
        }
        if keep:
            values["p_keep"] = list(keep)
        async with self._engine.begin() as conn:
            ids = (await conn.execute(_RECOVER[bool(keep)], values)).scalars().all()
        return list(ids)

    async def release_worker(self, worker_id: uuid.UUID) -> list[uuid.UUID]:
        """Shutdown: this worker's running chats go back to pending for another worker."""
        values = {"p_worker_id": worker_id, "p_updated_at": self._clock.now()}
        async with self._engine.begin() as conn:
            ids = (await conn.execute(_RELEASE, values)).scalars().all()
        return list(ids)

    async def finish_turn(
        self,
        chat_id: uuid.UUID,
        worker_id: uuid.UUID,
        *,
        error: str | None = None,
        error_code: str | None = None,
    ) -> tuple[Chat, StoredMessage | None]:
        """End a turn in one transaction: verify ownership, promote the oldest queued
        message (→ pending) or settle (waiting | error). Returns the chat and the
        promoted message, if any. Conflict if this worker no longer owns the chat."""
        settled = ChatStatus.ERROR if error else ChatStatus.WAITING
        values = {
            "p_id": chat_id,
            "p_queued": chat_id,
            "p_worker_id": worker_id,
            "p_status": settled.value,
            "p_last_error": error,
            "p_last_error_code": error_code,
            "p_updated_at": self._clock.now(),
        }
        if self._engine.dialect.name == "postgresql":
            row = await self._settle_if_unqueued_pg(values)
            if row is not None:
                return chat_from_row(row), None
        async with self._engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # One writer: the queue cannot change between this statement's look and its
                # write, so the common case (nothing queued) settles in one statement.
                row = await _SETTLE_IF_UNQUEUED_FAST.first(conn, values)
                if row is not None:
                    return chat_from_row(row), None
            # Lock the row first (a guarded no-op UPDATE: row lock on PostgreSQL, the write
            # lock on SQLite), so a concurrent ``submit_user_message`` either lands its queued
            # message before we look at the queue or sees the settled status after us.
            if (await conn.execute(_LOCK_OURS, values)).first() is None:
                raise Conflict("chat is no longer owned by this worker")
            promoted = await promote_queued(conn, chat_id, clock=self._clock)
            if promoted is not None:
                values["p_status"] = ChatStatus.PENDING.value
            row = (await conn.execute(_SETTLE, values)).one()
            return chat_from_row(row), promoted

    async def _settle_if_unqueued_pg(self, values: dict[str, Any]) -> Any:
        """PostgreSQL's finish when nothing is queued, in one statement (issue #12), or None
        (something is queued, the chat is not ours, or the row moved meanwhile): the
        caller then takes the locking path.

        Under READ COMMITTED the statement's ``NOT EXISTS`` would look at the queue as of
        its start even after waiting for a concurrent send's row lock, and could settle
        the chat past a message that send just queued. Under REPEATABLE READ a row changed
        after the snapshot (the send's lock, a heartbeat, an interrupt) fails the statement
        with a serialization error instead, and a send after it finds the chat settled."""
        try:
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    return await _SETTLE_IF_UNQUEUED_FAST.first(conn, values)
        except sa.exc.DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) != _SERIALIZATION_FAILURE:
                raise
            return None
