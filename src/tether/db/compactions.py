"""Compaction records and per-request usage of chats (chatd/compaction.py, context.py).

A record is written in one INSERT after its summary exists, so a crash, an interrupt or a
takeover during summarisation leaves the previous record (or none) in force. ``number`` is
the previous record's number + 1 and unique per chat: when two replicas compact the same
state at once, exactly one insert succeeds and the other gets :class:`Conflict`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.engine import reading
from tether.db.fastexec import FastStatement
from tether.db.prebuilt import bound
from tether.db.tables import (
    chat_compactions,
    chat_messages,
    chat_usage,
    chats,
    user_context_settings,
)
from tether.errors import Conflict
from tether.ids import new_id

# Built once (db/prebuilt.py) with every column bound: every turn records its usage with it
# (db/fastexec.py: SQLite runs it on its connection directly).
_INSERT_USAGE = chat_usage.insert().values({c: bound(c) for c in chat_usage.c})
_INSERT_USAGE_FAST = FastStatement(_INSERT_USAGE)


@dataclass(frozen=True)
class Compaction:
    id: uuid.UUID
    chat_id: uuid.UUID
    number: int
    through_seq: int  # messages with seq <= this are no longer sent to the model
    kind: str  # compact | clear
    summary: str
    carried: dict[str, Any]  # {goal, messages}: what every compaction keeps (chatd/elision.py)
    tokens_before: int | None
    created_at: datetime
    invalidated: bool = False  # an edit before its cut (db/chatedits.py): not applied


def _row(row: Any) -> Compaction:
    return Compaction(
        id=row.id,
        chat_id=row.chat_id,
        number=row.number,
        through_seq=row.through_seq,
        kind=row.kind,
        summary=row.summary,
        carried=dict(row.carried or {}),
        tokens_before=row.tokens_before,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        invalidated=row.invalidated_at is not None,
    )


@dataclass(frozen=True)
class UsageRow:
    """What the provider reported for one model request."""

    chat_id: uuid.UUID
    model: str | None
    input_tokens: int
    output_tokens: int
    estimated_tokens: int | None
    created_at: datetime
    turn_seq: int | None = None  # the seq of the user message that started the turn
    owner_id: uuid.UUID | None = None  # the chat's owner (read from the chat when None)


class CompactionStore:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def latest(self, chat_id: uuid.UUID) -> Compaction | None:
        query = (
            sa.select(chat_compactions)
            .where(
                chat_compactions.c.chat_id == chat_id,
                chat_compactions.c.invalidated_at.is_(None),
            )
            .order_by(chat_compactions.c.number.desc())
            .limit(1)
        )
        async with reading(self._engine) as conn:
            row = (await conn.execute(query)).first()
        return _row(row) if row is not None else None

    async def all(self, chat_id: uuid.UUID) -> list[Compaction]:
        query = (
            sa.select(chat_compactions)
            .where(chat_compactions.c.chat_id == chat_id)
            .order_by(chat_compactions.c.number)
        )
        async with reading(self._engine) as conn:
            return [_row(r) for r in (await conn.execute(query)).all()]

    async def record(
        self,
        chat_id: uuid.UUID,
        *,
        previous: Compaction | None,
        through_seq: int,
        kind: str,
        summary: str,
        carried: dict[str, Any],
        tokens_before: int | None = None,
    ) -> Compaction:
        """Insert the record that follows ``previous``; Conflict when another compaction
        of the same chat got there first (its history is then the one in force).

        ``number`` follows the highest one of the chat, invalidated records included (an
        edit invalidates records without renumbering); the insert checks in the same
        transaction that ``previous`` is still the record in force, and two concurrent
        inserts of the same number still collide on the unique constraint."""
        values = {
            "id": new_id(),
            "chat_id": chat_id,
            "through_seq": through_seq,
            "kind": kind,
            "summary": summary,
            "carried": carried,
            "tokens_before": tokens_before,
            "created_at": self._clock.now(),
        }
        try:
            async with self._engine.begin() as conn:
                # The record in force and the highest number in ONE statement, so both come
                # from one snapshot: read separately, a replica could see "no compaction yet"
                # and then (after another replica committed number n) number its own n + 1,
                # and both would be recorded. From one snapshot, two replicas compacting the
                # same state pick the same number and collide on the unique constraint.
                in_force = (
                    sa.select(chat_compactions.c.id)
                    .where(
                        chat_compactions.c.chat_id == chat_id,
                        chat_compactions.c.invalidated_at.is_(None),
                    )
                    .order_by(chat_compactions.c.number.desc())
                    .limit(1)
                    .scalar_subquery()
                )
                highest_number = (
                    sa.select(sa.func.coalesce(sa.func.max(chat_compactions.c.number), 0))
                    .where(chat_compactions.c.chat_id == chat_id)
                    .scalar_subquery()
                )
                top_id, highest = (
                    await conn.execute(
                        sa.select(in_force.label("top_id"), highest_number.label("highest"))
                    )
                ).one()
                if top_id != (previous.id if previous is not None else None):
                    raise Conflict("the chat was compacted or edited meanwhile; not recording")
                edited = await conn.scalar(  # an edit at or before the cut replaced what
                    sa.select(chat_messages.c.superseded_at).where(  # was summarised
                        chat_messages.c.chat_id == chat_id, chat_messages.c.seq == through_seq
                    )
                )
                if edited is not None:
                    raise Conflict("a message was edited meanwhile; not recording")
                values["number"] = int(highest or 0) + 1
                row = (
                    await conn.execute(
                        chat_compactions.insert().values(**values).returning(*chat_compactions.c)
                    )
                ).one()
        except IntegrityError as exc:
            raise Conflict(
                "the chat was compacted concurrently; its newer history is kept"
            ) from exc
        return _row(row)

    async def user_threshold(self, user_id: uuid.UUID) -> float | None:
        query = sa.select(user_context_settings.c.compaction_threshold).where(
            user_context_settings.c.user_id == user_id
        )
        async with reading(self._engine) as conn:
            value = await conn.scalar(query)
        return float(value) if value is not None else None

    async def set_user_threshold(self, user_id: uuid.UUID, threshold: float | None) -> None:
        """Set (or, with None, drop) the user's own threshold; one upsert-like pair."""
        async with self._engine.begin() as conn:
            await conn.execute(
                user_context_settings.delete().where(user_context_settings.c.user_id == user_id)
            )
            if threshold is not None:
                await conn.execute(
                    user_context_settings.insert().values(
                        user_id=user_id,
                        compaction_threshold=threshold,
                        updated_at=self._clock.now(),
                    )
                )

    def now(self) -> datetime:
        """The store's clock (a usage row is stamped when the provider answered)."""
        return self._clock.now()

    async def record_usage(
        self,
        chat_id: uuid.UUID,
        *,
        model: str | None,
        input_tokens: int,
        output_tokens: int,
        estimated_tokens: int | None,
        turn_seq: int | None = None,
    ) -> None:
        await self.record_usages(
            [
                UsageRow(
                    chat_id,
                    model,
                    input_tokens,
                    output_tokens,
                    estimated_tokens,
                    self._clock.now(),
                    turn_seq=turn_seq,
                )
            ]
        )

    async def record_usages(self, rows: Sequence[UsageRow]) -> None:
        """Store the usage of several requests in one statement (a turn's, at its end)."""
        if not rows:
            return
        async with self._engine.begin() as conn:
            owners = {r.chat_id: r.owner_id for r in rows if r.owner_id is not None}
            unknown = {r.chat_id for r in rows} - owners.keys()
            if unknown:  # the turn passes its chat's owner; other callers cost one query
                found = await conn.execute(
                    sa.select(chats.c.id, chats.c.owner_id).where(chats.c.id.in_(unknown))
                )
                owners.update({row.id: row.owner_id for row in found})
            await _INSERT_USAGE_FAST.many(
                conn,
                [
                    {
                        "p_id": new_id(),
                        "p_chat_id": r.chat_id,
                        "p_owner_id": owners.get(r.chat_id),
                        "p_turn_seq": r.turn_seq,
                        "p_model": r.model,
                        "p_input_tokens": r.input_tokens,
                        "p_output_tokens": r.output_tokens,
                        "p_estimated_tokens": r.estimated_tokens,
                        "p_created_at": r.created_at,
                    }
                    for r in rows
                ],
            )

    async def usage(self, chat_id: uuid.UUID) -> list[tuple[int, int, int | None]]:
        """``(input, output, estimated)`` tokens of each request, oldest first."""
        query = (
            sa.select(
                chat_usage.c.input_tokens, chat_usage.c.output_tokens, chat_usage.c.estimated_tokens
            )
            .where(chat_usage.c.chat_id == chat_id)
            .order_by(chat_usage.c.created_at, chat_usage.c.id)
        )
        async with reading(self._engine) as conn:
            return [(r[0], r[1], r[2]) for r in (await conn.execute(query)).all()]
