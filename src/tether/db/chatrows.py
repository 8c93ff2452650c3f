"""Rows of the chat tables as domain types, and the statements the chat stores share
inside one transaction: read a chat, lock it if it is in a given state, append a message.

The store modules (``db/chats.py``, ``db/chatclaims.py``, ``db/chatqueue.py``) compose
their transactions from these; each function takes the caller's connection."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.clock import as_utc
from tether.db.fastexec import FastStatement
from tether.db.prebuilt import bound
from tether.db.tables import chat_messages, chats
from tether.domain.chat import Chat, ChatStatus, StoredMessage
from tether.errors import NotFound
from tether.ids import new_id


def chat_from_row(row: Any) -> Chat:
    return Chat(
        id=row.id,
        owner_id=row.owner_id,
        title=row.title,
        status=ChatStatus(row.status),
        worker_id=row.worker_id,
        heartbeat_at=as_utc(row.heartbeat_at),
        last_error=row.last_error,
        last_error_code=row.last_error_code,
        parent_chat_id=row.parent_chat_id,
        root_chat_id=row.root_chat_id,
        workspace_id=row.workspace_id,
        build_id=row.build_id,
        agent_id=row.agent_id,
        model=row.model,
        archived=row.archived,
        interrupt_requested=row.interrupt_requested,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
        plan_mode=bool(row.plan_mode),
        last_injected_context=row.last_injected_context,
        title_source=row.title_source,
    )


def message_from_row(row: Any) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        chat_id=row.chat_id,
        seq=row.seq,
        role=row.role,
        parts=list(row.parts),
        visibility=row.visibility,
        model=row.model,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        superseded=row.superseded_at is not None,
    )


# Built once (db/prebuilt.py): a stream's open, the send and the API read a chat by id.
_GET_CHAT = sa.select(chats).where(chats.c.id == bound(chats.c.id))
_GET_CHAT_FAST = FastStatement(_GET_CHAT)  # db/fastexec.py


async def get_chat(conn: AsyncConnection, chat_id: uuid.UUID) -> Chat:
    row = await _GET_CHAT_FAST.first(conn, {"p_id": chat_id})
    if row is None:
        raise NotFound(f"chat {chat_id} not found")
    return chat_from_row(row)


async def lock_chat_if(
    conn: AsyncConnection,
    chat_id: uuid.UUID,
    statuses: list[ChatStatus],
    *extra: sa.ColumnElement[bool],
) -> Chat | None:
    """Lock the chat row for this transaction if it is in one of ``statuses``; returns
    the (unchanged) chat then, else None."""
    row = (
        await conn.execute(
            chats.update()
            .where(
                chats.c.id == chat_id,
                chats.c.status.in_([s.value for s in statuses]),
                *extra,
            )
            .values(status=chats.c.status)
            .returning(*chats.c)
        )
    ).first()
    return chat_from_row(row) if row is not None else None


async def insert_message_in(
    conn: AsyncConnection,
    chat_id: uuid.UUID,
    role: str,
    parts: list[dict[str, Any]],
    visibility: str,
    model: str | None,
    *,
    now: datetime,
) -> StoredMessage:
    # One statement (was SELECT max + INSERT + SELECT): the next seq is computed inside
    # the INSERT and the stored row comes back with RETURNING. A concurrent writer that
    # took the same seq still fails the unique constraint (append_message retries).
    values = {
        "p_id": new_id(),
        "p_chat_id": chat_id,
        "p_role": role,
        "p_parts": parts,
        "p_visibility": visibility,
        "p_model": model,
        "p_created_at": now,
    }
    row = await _INSERT_MESSAGE_FAST.one(conn, values)
    return message_from_row(row)


def _insert_message() -> sa.Insert:
    def bound(name: str) -> sa.BindParameter[Any]:
        return sa.bindparam(f"p_{name}", type_=chat_messages.c[name].type)

    next_seq = (
        sa.select(sa.func.coalesce(sa.func.max(chat_messages.c.seq), 0) + 1)
        .where(chat_messages.c.chat_id == bound("chat_id"))
        .scalar_subquery()
    )
    return (
        chat_messages.insert()
        .values(
            id=bound("id"),
            chat_id=bound("chat_id"),
            seq=next_seq,
            role=bound("role"),
            parts=bound("parts"),
            visibility=bound("visibility"),
            model=bound("model"),
            created_at=bound("created_at"),
        )
        .returning(*chat_messages.c)
    )


# Built once: every message of every chat is inserted by it, and constructing it cost more
# CPU than running it.
_INSERT_MESSAGE = _insert_message()
_INSERT_MESSAGE_FAST = FastStatement(_INSERT_MESSAGE)  # db/fastexec.py


def _messages(*, all_of_them: bool, limited: bool) -> sa.Select[Any]:
    query = (
        sa.select(chat_messages)
        .where(
            chat_messages.c.chat_id == bound(chat_messages.c.chat_id),
            chat_messages.c.seq > bound(chat_messages.c.seq, "after_seq"),
        )
        .order_by(chat_messages.c.seq)
    )
    if not all_of_them:
        query = query.where(chat_messages.c.superseded_at.is_(None))
    if limited:
        query = query.limit(sa.bindparam("p_limit", type_=sa.Integer))
    return query


# Built once, one per shape (superseded included?, limited?): every turn reads its history
# with it (``p_chat_id``, ``p_after_seq``, ``p_limit``).
MESSAGES = {
    (all_of_them, limited): _messages(all_of_them=all_of_them, limited=limited)
    for all_of_them in (False, True)
    for limited in (False, True)
}
MESSAGES_FAST = {shape: FastStatement(query) for shape, query in MESSAGES.items()}
