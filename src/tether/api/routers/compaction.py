"""``POST /api/v1/chats/{id}/compact`` and ``/clear`` (chatd/compaction.py).

Both act on an idle chat (waiting or error; 409 otherwise): ``compact`` summarises the
history before the recent exchanges with the chat's model, ``clear`` starts a fresh
context. The messages stay readable (``GET …/messages`` marks them ``compacted``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tether.api.auth import CurrentUser, graph_of
from tether.chatd.compaction import longchat_of
from tether.chatd.models import Chat, ChatStatus
from tether.db.compactions import Compaction
from tether.errors import Conflict
from tether.workspaces.models import User

router = APIRouter(prefix="/api/v1/chats", tags=["chats"])

IDLE = (ChatStatus.WAITING, ChatStatus.ERROR)


class CompactionOut(BaseModel):
    number: int
    kind: str
    through_seq: int
    summary: str
    tokens_before: int | None
    created_at: datetime
    invalidated: bool = False  # an edit before its cut: no longer applied

    @classmethod
    def of(cls, c: Compaction) -> CompactionOut:
        return cls(
            number=c.number,
            kind=c.kind,
            through_seq=c.through_seq,
            summary=c.summary,
            tokens_before=c.tokens_before,
            created_at=c.created_at,
            invalidated=c.invalidated,
        )


async def _idle_chat(graph: Any, user: User, chat_id: uuid.UUID, verb: str) -> Chat:
    """The user's chat, when no turn of it is running (else Conflict)."""
    chat = await graph.chat_service.get(user, chat_id)
    if chat.status not in IDLE:
        raise Conflict(f"chat is {chat.status.value}; {verb} it when the turn has ended")
    return chat


@router.post("/{chat_id}/compact", responses={409: {"description": "the chat is busy"}})
async def compact(request: Request, chat_id: uuid.UUID, user: CurrentUser) -> CompactionOut:
    graph = graph_of(request)
    chat = await _idle_chat(graph, user, chat_id, "compact")
    model = await graph.models.model(chat.model)
    record = await longchat_of(graph).compact(chat.id, model, reason="user", keep_steps=2)
    return CompactionOut.of(record)


@router.post("/{chat_id}/clear", responses={409: {"description": "the chat is busy"}})
async def clear(request: Request, chat_id: uuid.UUID, user: CurrentUser) -> CompactionOut:
    graph = graph_of(request)
    chat = await _idle_chat(graph, user, chat_id, "clear")
    return CompactionOut.of(await longchat_of(graph).clear(chat.id))


@router.get("/{chat_id}/compactions")
async def compactions(
    request: Request, chat_id: uuid.UUID, user: CurrentUser
) -> list[CompactionOut]:
    graph = graph_of(request)
    chat = await graph.chat_service.get(user, chat_id)
    return [CompactionOut.of(c) for c in await longchat_of(graph).store.all(chat.id)]


me_router = APIRouter(prefix="/api/v1/me", tags=["chats"])


class ContextSettings(BaseModel):
    """A user's own compaction threshold (a share of each model's window); it applies only
    where it is lower than the model's. ``null`` drops it."""

    compaction_threshold: float | None = Field(default=None, ge=0.1, le=0.95)


@me_router.get("/context")
async def my_context(request: Request, user: CurrentUser) -> ContextSettings:
    store = longchat_of(graph_of(request)).store
    return ContextSettings(compaction_threshold=await store.user_threshold(user.id))


@me_router.put("/context")
async def set_my_context(
    request: Request, body: ContextSettings, user: CurrentUser
) -> ContextSettings:
    store = longchat_of(graph_of(request)).store
    await store.set_user_threshold(user.id, body.compaction_threshold)
    return body
