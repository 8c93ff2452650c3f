"""Two reads of the chat tables that the web UI needs and the chat daemon does not:

* :func:`messages_before` — history paged backwards (the newest page first, then older
  pages as the reader scrolls up), so a long chat opens without reading all of it;
* :func:`chats_changed_since` — one owner's chats whose row changed at or after a moment,
  the poll behind the per-owner watch stream (``api/routers/chatwatch.py``).

Both are single indexed selects; writes stay in :mod:`tether.db.chats` and its parts.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.chatrows import chat_from_row, message_from_row
from tether.db.tables import chat_messages, chats
from tether.domain.chat import Chat, StoredMessage


async def messages_before(
    engine: AsyncEngine,
    chat_id: uuid.UUID,
    *,
    before_seq: int | None,
    limit: int,
    include_superseded: bool = False,
) -> list[StoredMessage]:
    """The last ``limit`` messages with ``seq < before_seq`` (``None``: the newest), in
    ``seq`` order; messages an edit replaced only with ``include_superseded``."""
    query = sa.select(chat_messages).where(chat_messages.c.chat_id == chat_id)
    if not include_superseded:
        query = query.where(chat_messages.c.superseded_at.is_(None))
    if before_seq is not None:
        query = query.where(chat_messages.c.seq < before_seq)
    query = query.order_by(chat_messages.c.seq.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [message_from_row(r) for r in reversed(rows)]


async def chats_changed_since(
    engine: AsyncEngine, owner_id: uuid.UUID, since: datetime, *, limit: int
) -> list[Chat]:
    """The owner's chats with ``updated_at >= since``, oldest change first (at most
    ``limit``)."""
    query = (
        sa.select(chats)
        .where(chats.c.owner_id == owner_id, chats.c.updated_at >= since)
        .order_by(chats.c.updated_at)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [chat_from_row(r) for r in rows]
