"""Two reads of the chat tables that the web UI needs and the chat daemon does not:

* :func:`messages_before` — history paged backwards (the newest page first, then older
  pages as the reader scrolls up), so a long chat opens without reading all of it;
* :func:`chats_changed_since` — some owners' chats whose row changed at or after a moment,
  the poll behind the per-owner watch stream (``api/routers/chatwatch.py``).

Both are single indexed selects; writes stay in :mod:`tether.db.chats` and its parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.chatrows import chat_from_row, message_from_row
from tether.db.engine import reading
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
    async with reading(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [message_from_row(r) for r in reversed(rows)]


async def chats_changed_since(
    engine: AsyncEngine,
    owner_ids: Sequence[uuid.UUID],
    since: datetime,
    *,
    limit: int,
    after_id: uuid.UUID | None = None,
) -> list[Chat]:
    """The chats of ``owner_ids`` with ``updated_at >= since``, oldest change first, ties in
    id order (at most ``limit``). With ``after_id``, the rows stamped exactly ``since`` are
    only those after it: the next page of a batch that ended there."""
    owner = chats.c.owner_id
    stamp = chats.c.updated_at
    newer = (
        stamp >= since
        if after_id is None
        else sa.or_(stamp > since, sa.and_(stamp == since, chats.c.id > after_id))
    )
    query = (
        sa.select(chats)
        .where(owner == owner_ids[0] if len(owner_ids) == 1 else owner.in_(owner_ids), newer)
        .order_by(stamp, chats.c.id)
        .limit(limit)
    )
    async with reading(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [chat_from_row(r) for r in rows]
