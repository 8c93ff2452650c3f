"""``GET /api/v1/me/chats/stream``: the signed-in user's chats as they change (SSE).

What the chats list of the web UI follows instead of polling the list. Events:

* ``ready`` — sent once per connection after the watch has taken its baseline; load the
  list (``GET /api/v1/chats``) after it and apply the events that follow (a reconnect sends
  ``ready`` again: reload then, as changes during the gap are not replayed);
* ``created``, ``status``, ``title``, ``archived``, ``updated`` — one chat changed; the data
  is ``{"changes": [...], "chat": <the chat as GET /api/v1/chats/{id} shows it>}`` and the
  event name is the first of ``changes``;
* a ``: ping`` comment as on a chat's stream (``ChatService.stream_ping_s``).

Only the caller's own chats are ever read (the query is by owner). Polling the database is
the truth, as for a chat's stream (a change can come from any replica): one indexed query
per ``ChatService.stream_poll_s`` (1 s) for the rows changed since the last look
(``db/chatreads.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.api.auth import CurrentUser
from tether.api.chatschemas import chat_outs  # the same JSON as the chats API
from tether.api.deps import ChatServiceDep, ClockDep, EngineDep
from tether.api.revocation import StreamGuardDep
from tether.api.sse import PING_COMMENT, SSE_RESPONSE, sse_event, sse_response
from tether.chatd.service import ChatService
from tether.clock import Clock
from tether.db.chatreads import chats_changed_since
from tether.domain.chat import Chat

router = APIRouter(prefix="/api/v1/me", tags=["chats"])

# Rows stamped up to this long before the newest one seen are read again (and skipped when
# unchanged): replicas' clocks and commit order may stamp a later commit a little earlier.
SKEW = timedelta(seconds=2)
BATCH = 200  # changed rows read per poll; more wait for the next poll


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


class _Watch:
    """What this subscriber has seen: the latest row of every chat read so far (at most
    the owner's chats)."""

    def __init__(self, engine: AsyncEngine, clock: Clock, owner_id: uuid.UUID) -> None:
        self._engine = engine
        self._owner = owner_id
        self._seen: dict[uuid.UUID, Chat] = {}
        self.started = clock.now() - SKEW
        self._since = self.started

    async def poll(self) -> list[tuple[list[str], Chat]]:
        rows = await chats_changed_since(self._engine, self._owner, self._since, limit=BATCH)
        out = []
        for chat in rows:
            before = self._seen.get(chat.id)
            if before is not None and _fingerprint(before) == _fingerprint(chat):
                continue
            self._seen[chat.id] = chat
            out.append((_changes(before, chat, self.started), chat))
        if rows:
            # a full batch moves on without the skew margin, or it would read itself again
            back = timedelta(0) if len(rows) >= BATCH else SKEW
            self._since = max(self._since, rows[-1].updated_at - back)
        return out


@router.get("/chats/stream", responses=SSE_RESPONSE)
async def watch_my_chats(
    request: Request,
    user: CurrentUser,
    service: ChatServiceDep,
    engine: EngineDep,
    clock: ClockDep,
    guard: StreamGuardDep,
) -> StreamingResponse:
    """Server-sent events of the caller's chats as they change (see the module doc)."""
    events = _events(request, service, _Watch(engine, clock, user.id))
    return sse_response(guard.stream(request, events))


async def _events(request: Request, service: ChatService, watch: _Watch) -> AsyncIterator[str]:
    await watch.poll()  # the baseline: what the list loaded after ``ready`` already shows
    yield sse_event({}, event="ready")
    # wall-clock pacing of I/O (as chatd/follow.py), not domain time
    loop = asyncio.get_running_loop()
    next_ping = loop.time() + service.stream_ping_s
    while not await request.is_disconnected():
        changed = await watch.poll()
        if changed:
            outs = await chat_outs(service, [chat for _, chat in changed])
            for (changes, _), out in zip(changed, outs, strict=True):
                data = {"changes": changes, "chat": out.model_dump(mode="json")}
                yield sse_event(data, event=changes[0])
        if loop.time() >= next_ping:
            next_ping = loop.time() + service.stream_ping_s
            yield PING_COMMENT
        await asyncio.sleep(service.stream_poll_s)
