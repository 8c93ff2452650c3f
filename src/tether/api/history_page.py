"""History paged backwards: ``GET /api/v1/chats/{id}/messages?latest=true`` (the newest
page) and ``?before_seq=N`` (the page before message ``N``). The web UI opens a chat with
the newest page, subscribes to the stream from its last id and loads older pages as the
reader scrolls up (``db/chatreads.py`` holds the query)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from tether.chatd.compaction import LongChat
from tether.chatd.service import ChatService
from tether.db.chatreads import messages_before
from tether.domain.chat import StoredMessage
from tether.domain.user import User
from tether.errors import InvalidInput


@dataclass(frozen=True)
class BackwardPage:
    messages: list[StoredMessage]  # in seq order
    compacted_through: int  # messages up to this seq are before the last compaction
    prev_before_seq: int | None  # the next (older) page's ``before_seq``; None: no more


async def backward_page(
    service: ChatService,
    engine: AsyncEngine,
    longchat: LongChat,
    user: User,
    chat_id: uuid.UUID,
    before_seq: int | None,
    limit: int,
    after_seq: int,
    include_superseded: bool = False,
) -> BackwardPage:
    if after_seq:
        raise InvalidInput(
            "page either forwards (after_seq) or backwards (before_seq / latest), not both",
            field="after_seq",
        )
    chat = await service.get(user, chat_id)  # 404 for another member's chat
    # one extra row tells whether an older page exists without a count query
    rows = await messages_before(
        engine,
        chat.id,
        before_seq=before_seq,
        limit=limit + 1,
        include_superseded=include_superseded,
    )
    more = len(rows) > limit
    page = rows[-limit:] if more else rows
    latest = await longchat.store.latest(chat.id)
    return BackwardPage(
        messages=page,
        compacted_through=latest.through_seq if latest is not None else 0,
        prev_before_seq=page[0].seq if more and page else None,
    )
