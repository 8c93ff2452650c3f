"""Editing a user message (``PATCH /api/v1/chats/{id}/messages/{message_id}``, chatd/edits.py).

One transaction: the idle chat becomes pending (a guarded ``UPDATE``, so no turn can start
or finish in between), the edited message and every later one are marked superseded (soft
delete: the rows stay for ``?include_superseded=true``), compactions whose cut lies at or
after the edited message are marked invalidated, and the new user message is appended. A
failure anywhere rolls all of it back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.chatd.models import Chat, ChatStatus, StoredMessage
from tether.clock import Clock
from tether.db.chats import ChatStore
from tether.db.tables import chat_compactions, chat_messages, chats
from tether.errors import ChatBusy, MessageNotEditable, NotFound

IDLE = (ChatStatus.WAITING.value, ChatStatus.ERROR.value)
EDITABLE_PARTS = frozenset({"text", "image"})


@dataclass(frozen=True)
class Edit:
    chat: Chat
    message: StoredMessage  # the new user message
    superseded_from_seq: int  # messages with seq >= this were superseded
    superseded: int  # how many
    invalidated_compactions: int


async def edit_user_message(
    engine: AsyncEngine,
    clock: Clock,
    store: ChatStore,
    chat_id: uuid.UUID,
    message_id: uuid.UUID,
    parts: list[dict[str, Any]],
) -> Edit:
    now = clock.now()
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                chats.update()
                .where(chats.c.id == chat_id, chats.c.status.in_(IDLE))
                .values(
                    status=ChatStatus.PENDING.value,
                    last_error=None,
                    last_error_code=None,
                    updated_at=now,
                )
                .returning(chats.c.id)
            )
        ).first()
        if row is None:
            status = await conn.scalar(sa.select(chats.c.status).where(chats.c.id == chat_id))
            if status is None:
                raise NotFound(f"chat {chat_id} not found")
            raise ChatBusy(
                f"chat is {status}; a message can be edited only while no turn runs",
                remediation="interrupt the chat (POST /api/v1/chats/{id}/interrupt, "
                "`tether chat interrupt`) or wait for the turn to end, then edit again",
                status=status,
            )
        old = (
            await conn.execute(
                sa.select(chat_messages).where(
                    chat_messages.c.id == message_id, chat_messages.c.chat_id == chat_id
                )
            )
        ).first()
        if old is None:
            raise NotFound(f"message {message_id} not found in chat {chat_id}")
        kinds = {p.get("type") for p in old.parts}
        if old.role != "user" or old.visibility != "both" or not kinds <= EDITABLE_PARTS:
            raise MessageNotEditable(
                f"message {message_id} is a {old.role} message; only user messages can be edited",
                message_id=str(message_id),
            )
        if old.superseded_at is not None:
            raise MessageNotEditable(
                f"message {message_id} was already edited; edit its newer version",
                message_id=str(message_id),
            )
        superseded = await conn.execute(
            chat_messages.update()
            .where(
                chat_messages.c.chat_id == chat_id,
                chat_messages.c.seq >= old.seq,
                chat_messages.c.superseded_at.is_(None),
            )
            .values(superseded_at=now)
        )
        invalidated = await conn.execute(
            chat_compactions.update()
            .where(
                chat_compactions.c.chat_id == chat_id,
                chat_compactions.c.through_seq >= old.seq,
                chat_compactions.c.invalidated_at.is_(None),
            )
            .values(invalidated_at=now)
        )
        message = await store.insert_message(conn, chat_id, parts)
    chat = await store.get(chat_id)
    return Edit(chat, message, old.seq, superseded.rowcount or 0, invalidated.rowcount or 0)
