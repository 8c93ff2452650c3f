"""``POST /api/v1/chats/{id}/compact`` and ``/clear`` (chatd/compaction.py).

Both act on an idle chat (waiting or error; 409 otherwise): ``compact`` summarises the
history before the recent exchanges with the chat's model, ``clear`` starts a fresh
context. The messages stay readable (``GET …/messages`` marks them ``compacted``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tether.api.auth import CurrentUser
from tether.api.deps import ChatServiceDep, LongChatDep, ModelsDep
from tether.chatd.service import ChatService
from tether.db.compactions import Compaction
from tether.domain.chat import Chat, ChatStatus
from tether.domain.user import User
from tether.errors import Conflict

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


async def _idle_chat(service: ChatService, user: User, chat_id: uuid.UUID, verb: str) -> Chat:
    """The user's chat, when no turn of it is running (else Conflict)."""
    chat = await service.get(user, chat_id)
    if chat.status not in IDLE:
        raise Conflict(f"chat is {chat.status.value}; {verb} it when the turn has ended")
    return chat


@router.post("/{chat_id}/compact", responses={409: {"description": "the chat is busy"}})
async def compact(
    service: ChatServiceDep,
    models: ModelsDep,
    longchat: LongChatDep,
    chat_id: uuid.UUID,
    user: CurrentUser,
) -> CompactionOut:
    chat = await _idle_chat(service, user, chat_id, "compact")
    model = await models.model(chat.model)
    record = await longchat.compact(chat.id, model, reason="user", keep_steps=2)
    return CompactionOut.of(record)


@router.post("/{chat_id}/clear", responses={409: {"description": "the chat is busy"}})
async def clear(
    service: ChatServiceDep, longchat: LongChatDep, chat_id: uuid.UUID, user: CurrentUser
) -> CompactionOut:
    chat = await _idle_chat(service, user, chat_id, "clear")
    return CompactionOut.of(await longchat.clear(chat.id))


@router.get("/{chat_id}/compactions")
async def compactions(
    service: ChatServiceDep, longchat: LongChatDep, chat_id: uuid.UUID, user: CurrentUser
) -> list[CompactionOut]:
    chat = await service.get(user, chat_id)
    return [CompactionOut.of(c) for c in await longchat.store.all(chat.id)]


me_router = APIRouter(prefix="/api/v1/me", tags=["chats"])


class ContextSettings(BaseModel):
    """A user's own compaction threshold (a share of each model's window); it applies only
    where it is lower than the model's. ``null`` drops it."""

    compaction_threshold: float | None = Field(default=None, ge=0.1, le=0.95)


@me_router.get("/context")
async def my_context(longchat: LongChatDep, user: CurrentUser) -> ContextSettings:
    store = longchat.store
    return ContextSettings(compaction_threshold=await store.user_threshold(user.id))


@me_router.put("/context")
async def set_my_context(
    longchat: LongChatDep, body: ContextSettings, user: CurrentUser
) -> ContextSettings:
    store = longchat.store
    await store.set_user_threshold(user.id, body.compaction_threshold)
    return body
