"""Token usage: per chat (totals and per turn) and the caller's own this month
(``db/usage.py``, ``chatd/usagelimits.py``). The admin limits are in chat_config.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from tether.api.auth import CurrentUser, graph_of
from tether.chatd.usagelimits import PERIOD, usage_guard_of
from tether.db.usage import UsageStore

router = APIRouter(tags=["usage"])

TURNS_MAX = 500


class TurnUsageOut(BaseModel):
    message_id: uuid.UUID | None  # the user message that started the turn
    input_tokens: int
    output_tokens: int
    requests: int


class ChatUsageOut(BaseModel):
    input_tokens: int
    output_tokens: int
    requests: int
    turns: list[TurnUsageOut]  # the last ``limit`` turns, oldest first


class MyUsageOut(BaseModel):
    period: str  # month: the calendar month in UTC
    period_start: datetime
    resets_at: datetime
    input_tokens: int
    output_tokens: int
    requests: int
    limit_tokens: int | None  # None: no limit
    remaining_tokens: int | None


@router.get("/api/v1/chats/{chat_id}/usage")
async def chat_usage(
    request: Request,
    chat_id: uuid.UUID,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=TURNS_MAX)] = 100,
) -> ChatUsageOut:
    """Tokens the provider reported for the chat's model requests (summaries excluded)."""
    graph = graph_of(request)
    chat = await graph.chat_service.get(user, chat_id)
    store: UsageStore = graph.chat_service.store.usage
    total = await store.chat_total(chat.id)
    turns = await store.turns(chat.id, limit=limit)
    return ChatUsageOut(
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        requests=total.requests,
        turns=[
            TurnUsageOut(
                message_id=t.message_id,
                input_tokens=t.tokens.input_tokens,
                output_tokens=t.tokens.output_tokens,
                requests=t.tokens.requests,
            )
            for t in turns
        ],
    )


@router.get("/api/v1/users/me/usage")
async def my_usage(request: Request, user: CurrentUser) -> MyUsageOut:
    mine = await usage_guard_of(graph_of(request)).of(user.id)
    return MyUsageOut(
        period=PERIOD,
        period_start=mine.period_start,
        resets_at=mine.resets_at,
        input_tokens=mine.tokens.input_tokens,
        output_tokens=mine.tokens.output_tokens,
        requests=mine.tokens.requests,
        limit_tokens=mine.limit_tokens,
        remaining_tokens=mine.remaining_tokens,
    )
