"""The queue of user messages sent while a turn runs (``chat_queued_messages``): enqueue
under a per-chat bound, list and count, promote the oldest into the history when a turn
ends, and cancel a chat no worker has claimed yet.

:class:`ChatQueueOps` is a part of :class:`tether.db.chats.ChatStore` (a mixin over the
store's engine and clock); the in-transaction functions serve ``db/chats.py`` and
``db/chatclaims.py``, which enqueue and promote inside their own transactions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.chatrows import get_chat, insert_message_in, lock_chat_if
from tether.db.engine import reading
from tether.db.prebuilt import bound
from tether.db.tables import chat_queued_messages, chats
from tether.domain.chat import Chat, ChatStatus, QueuedMessage, StoredMessage
from tether.errors import Conflict, QueueFull
from tether.ids import new_id


async def enqueue_in(
    conn: AsyncConnection,
    chat_id: uuid.UUID,
    parts: list[dict[str, Any]],
    *,
    max_queued: int,
    now: datetime,
) -> QueuedMessage:
    """Queue a message inside the caller's transaction; QueueFull past ``max_queued``."""
    count = await conn.scalar(
        sa.select(sa.func.count()).where(chat_queued_messages.c.chat_id == chat_id)
    )
    if (count or 0) >= max_queued:
        raise QueueFull(
            f"at most {max_queued} messages can be queued for a chat", max_queued=max_queued
        )
    qid = new_id()
    await conn.execute(
        chat_queued_messages.insert().values(id=qid, chat_id=chat_id, parts=parts, created_at=now)
    )
    return QueuedMessage(id=qid, chat_id=chat_id, parts=parts, created_at=now)


# Built once (db/prebuilt.py): on PostgreSQL every turn's finish looks at the queue.
_OLDEST_QUEUED = (
    sa.select(chat_queued_messages)
    .where(chat_queued_messages.c.chat_id == bound(chat_queued_messages.c.chat_id))
    .order_by(chat_queued_messages.c.created_at, chat_queued_messages.c.id)
    .limit(1)
)
_DELETE_QUEUED = chat_queued_messages.delete().where(
    chat_queued_messages.c.id == bound(chat_queued_messages.c.id)
)


async def promote_queued(
    conn: AsyncConnection, chat_id: uuid.UUID, *, clock: Clock
) -> StoredMessage | None:
    """Move the oldest queued message into the history (a user message); None if the
    queue is empty."""
    queued = (await conn.execute(_OLDEST_QUEUED, {"p_chat_id": chat_id})).first()
    if queued is None:
        return None
    await conn.execute(_DELETE_QUEUED, {"p_id": queued.id})
    return await insert_message_in(
        conn, chat_id, "user", list(queued.parts), "both", None, now=clock.now()
    )


class ChatQueueOps:
    _engine: AsyncEngine
    _clock: Clock

    async def enqueue(
        self, chat_id: uuid.UUID, parts: list[dict[str, Any]], *, max_queued: int
    ) -> QueuedMessage:
        async with self._engine.begin() as conn:
            return await enqueue_in(
                conn, chat_id, parts, max_queued=max_queued, now=self._clock.now()
            )

    async def queued(self, chat_id: uuid.UUID) -> list[QueuedMessage]:
        async with reading(self._engine) as conn:
            rows = (
                await conn.execute(
                    sa.select(chat_queued_messages)
                    .where(chat_queued_messages.c.chat_id == chat_id)
                    .order_by(chat_queued_messages.c.created_at, chat_queued_messages.c.id)
                )
            ).all()
        return [
            QueuedMessage(
                id=r.id,
                chat_id=r.chat_id,
                parts=list(r.parts),
                created_at=as_utc(r.created_at),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    async def queued_counts(self, chat_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Number of queued messages per chat (chats without any are left out)."""
        if not chat_ids:
            return {}
        query = (
            sa.select(chat_queued_messages.c.chat_id, sa.func.count())
            .where(chat_queued_messages.c.chat_id.in_(chat_ids))
            .group_by(chat_queued_messages.c.chat_id)
        )
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return {r[0]: int(r[1]) for r in rows}

    async def cancel_pending(self, chat_id: uuid.UUID) -> tuple[Chat, StoredMessage | None]:
        """Interrupt a chat no worker has claimed yet: the oldest queued message is promoted
        (the chat stays pending with it), or the chat settles to ``waiting``. Conflict if the
        chat is not pending (e.g. a worker claimed it meanwhile)."""
        async with self._engine.begin() as conn:
            if await lock_chat_if(conn, chat_id, [ChatStatus.PENDING]) is None:
                chat = await get_chat(conn, chat_id)
                raise Conflict(f"chat is {chat.status.value}; only a pending chat can be cancelled")
            promoted = await promote_queued(conn, chat_id, clock=self._clock)
            if promoted is None:
                await conn.execute(
                    chats.update()
                    .where(chats.c.id == chat_id)
                    .values(
                        status=ChatStatus.WAITING.value,
                        interrupt_requested=False,
                        updated_at=self._clock.now(),
                    )
                )
            return await get_chat(conn, chat_id), promoted
