"""Token usage read back from ``chat_usage`` (one row per model request, written by
``db/compactions.py: record_usage`` with the chat's owner and the turn's ``seq``).

* per chat: totals and per turn (a turn is keyed by the ``seq`` of the user message that
  started it; its ``message_id`` comes from that row, superseded or not);
* per user and period: one indexed aggregate over ``ix_chat_usage_owner`` — what the
  per-user limit (chatd/usagelimits.py) checks at send."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.engine import reading
from tether.db.tables import chat_messages, chat_usage


@dataclass(frozen=True)
class Tokens:
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class TurnUsage:
    message_id: uuid.UUID | None  # None: requests recorded before turns were keyed
    turn_seq: int | None
    tokens: Tokens


def _sums() -> list[sa.ColumnElement[int]]:
    return [
        sa.func.coalesce(sa.func.sum(chat_usage.c.input_tokens), 0),
        sa.func.coalesce(sa.func.sum(chat_usage.c.output_tokens), 0),
        sa.func.count(chat_usage.c.id),
    ]


class UsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def chat_total(self, chat_id: uuid.UUID) -> Tokens:
        query = sa.select(*_sums()).where(chat_usage.c.chat_id == chat_id)
        async with reading(self._engine) as conn:
            row = (await conn.execute(query)).one()
        return Tokens(int(row[0]), int(row[1]), int(row[2]))

    async def chat_totals(self, chat_ids: list[uuid.UUID]) -> dict[uuid.UUID, Tokens]:
        """Totals of several chats in one query (chats without usage are left out)."""
        if not chat_ids:
            return {}
        query = (
            sa.select(chat_usage.c.chat_id, *_sums())
            .where(chat_usage.c.chat_id.in_(chat_ids))
            .group_by(chat_usage.c.chat_id)
        )
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return {r[0]: Tokens(int(r[1]), int(r[2]), int(r[3])) for r in rows}

    async def turns(self, chat_id: uuid.UUID, *, limit: int) -> list[TurnUsage]:
        """The chat's last ``limit`` turns, oldest first."""
        query = (
            sa.select(chat_usage.c.turn_seq, *_sums())
            .where(chat_usage.c.chat_id == chat_id)
            .group_by(chat_usage.c.turn_seq)
            .order_by(sa.func.max(chat_usage.c.created_at).desc())
            .limit(limit)
        )
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
            seqs = [r[0] for r in rows if r[0] is not None]
            ids: dict[int, uuid.UUID] = {}
            if seqs:
                found = await conn.execute(
                    sa.select(chat_messages.c.seq, chat_messages.c.id).where(
                        chat_messages.c.chat_id == chat_id, chat_messages.c.seq.in_(seqs)
                    )
                )
                ids = {r[0]: r[1] for r in found.all()}
        out = [
            TurnUsage(
                ids.get(r[0]) if r[0] is not None else None,
                r[0],
                Tokens(int(r[1]), int(r[2]), int(r[3])),
            )
            for r in rows
        ]
        out.reverse()
        return out

    async def user_total(self, user_id: uuid.UUID, *, since: datetime) -> Tokens:
        """What the user's chats used since ``since`` (one indexed aggregate)."""
        query = sa.select(*_sums()).where(
            chat_usage.c.owner_id == user_id, chat_usage.c.created_at >= since
        )
        async with reading(self._engine) as conn:
            row = (await conn.execute(query)).one()
        return Tokens(int(row[0]), int(row[1]), int(row[2]))
