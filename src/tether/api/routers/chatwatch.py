"""``GET /api/v1/me/chats/stream``: the signed-in user's chats as they change (SSE).

What the chats list of the web UI follows instead of polling the list. Events:

* ``ready`` — sent once per connection after the watch has taken its baseline; load the
  list (``GET /api/v1/chats``) after it and apply the events that follow (a reconnect sends
  ``ready`` again: reload then, as changes during the gap are not replayed);
* ``created``, ``status``, ``title``, ``archived``, ``updated`` — one chat changed; the data
  is ``{"changes": [...], "chat": <the chat as GET /api/v1/chats/{id} shows it>}`` and the
  event name is the first of ``changes``;
* a ``: ping`` comment as on a chat's stream (``ChatService.stream_ping_s``).

Only the caller's own chats are ever sent (rows are handed out by owner). Polling the
database is the truth, as for a chat's stream (a change can come from any replica): one
indexed query per ``ChatService.stream_poll_s`` (1 s) for the rows changed since the last
look, made once for all the watch streams of the process (``api/watchpoll.py``), plus one
per stream when it opens (its baseline).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tether.api.auth import CurrentUser
from tether.api.chatschemas import chat_outs  # the same JSON as the chats API
from tether.api.deps import ChatServiceDep, ChatWatchPollerDep
from tether.api.revocation import StreamGuardDep
from tether.api.sse import PING_COMMENT, SSE_RESPONSE, sse_event, sse_response
from tether.api.watchpoll import ChatWatchPoller
from tether.chatd.service import ChatService
from tether.domain.chat import Chat

router = APIRouter(prefix="/api/v1/me", tags=["chats"])


def _fingerprint(c: Chat) -> tuple[Any, ...]:
    return (c.status.value, c.title, c.archived, c.updated_at, c.workspace_id)


def _changes(before: Chat | None, after: Chat, started: datetime) -> list[str]:
    if before is None:
        return ["created"] if after.created_at >= started else ["updated"]
    changes = [
        name
        for name, changed in (
            ("status", before.status != after.status),
            ("title", before.title != after.title),
            ("archived", before.archived != after.archived),
        )
        if changed
    ]
    return changes or ["updated"]


@router.get("/chats/stream", responses=SSE_RESPONSE)
async def watch_my_chats(
    request: Request,
    user: CurrentUser,
    service: ChatServiceDep,
    poller: ChatWatchPollerDep,
    guard: StreamGuardDep,
) -> StreamingResponse:
    """Server-sent events of the caller's chats as they change (see the module doc)."""
    return sse_response(guard.stream(request, _events(request, service, poller, user.id)))


async def _events(
    request: Request, service: ChatService, poller: ChatWatchPoller, owner_id: uuid.UUID
) -> AsyncIterator[str]:
    async with poller.subscribe(owner_id) as (baseline, sub):
        # the baseline: what the list loaded after ``ready`` already shows
        seen: dict[uuid.UUID, Chat] = {chat.id: chat for chat in baseline}
        yield sse_event({}, event="ready")
        # wall-clock pacing of I/O (as chatd/follow.py), not domain time
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + service.stream_ping_s
        while not await request.is_disconnected():
            changed = []
            for chat in await sub.take(max(0.0, next_ping - loop.time())):
                before = seen.get(chat.id)
                if before is not None and _fingerprint(before) == _fingerprint(chat):
                    continue  # read again within the cursor's margin, unchanged
                seen[chat.id] = chat
                changed.append((_changes(before, chat, sub.started), chat))
            if changed:
                outs = await chat_outs(service, [chat for _, chat in changed])
                for (changes, _), out in zip(changed, outs, strict=True):
                    data = {"changes": changes, "chat": out.model_dump(mode="json")}
                    yield sse_event(data, event=changes[0])
            if loop.time() >= next_ping:
                next_ping = loop.time() + service.stream_ping_s
                yield PING_COMMENT
