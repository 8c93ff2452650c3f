"""Credentials end at once: a revoked or expired token, or a disabled or deleted user,
gets 401 on the next request (every request authenticates against the database) and every
open SSE stream authenticated by it ends.

Streams learn of a change in two ways: an event on the bus channel :data:`CHANNEL` (crosses
replicas on PostgreSQL), published by whoever revoked or disabled; and, as the source of
truth when an event is lost, a re-check of the token every ``stream_auth_recheck_s`` and at
its expiry time. A stream that ends this way sends one ``error`` event with code
``unauthorized`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import Request

from tether.api.sse import sse_event
from tether.cancellation import cancel_and_wait
from tether.channels import IDENTITY
from tether.errors import Unauthorized

CHANNEL = IDENTITY  # the bus channel (defined in tether.channels)


async def publish_revoked(
    bus: Any, *, user_id: uuid.UUID, token_id: uuid.UUID | None = None
) -> None:
    """Tell every stream of ``user_id`` (or only those of ``token_id``) to re-check."""
    payload: dict[str, Any] = {"user_id": str(user_id)}
    if token_id is not None:
        payload["token_id"] = str(token_id)
    await bus.publish(CHANNEL, payload)


def _concerns(event: dict[str, Any], user_id: uuid.UUID, token_id: uuid.UUID) -> bool:
    if event.get("user_id") != str(user_id):
        return False
    return event.get("token_id") in (None, str(token_id))


async def _until_invalid(request: Request, sub: Any) -> None:
    """Return once the request's token no longer authenticates."""
    graph = request.app.state.graph
    user_id, token_id = request.state.auth_user_id, request.state.auth_token_id
    recheck_s = graph.settings.stream_auth_recheck_s
    clock = graph.clock
    while True:
        valid = await graph.users.token_valid(token_id)
        if valid is False:
            return
        wait_s = recheck_s
        if isinstance(valid, datetime):  # wake exactly at the expiry
            wait_s = max(0.0, min(wait_s, (valid - clock.now()).total_seconds()))
        deadline = clock.monotonic() + wait_s
        while (left := deadline - clock.monotonic()) > 0:
            event = await sub.get(timeout=left)
            # another user's event is skipped; ours, or a lost/truncated feed, re-checks
            if event is None or "user_id" not in event or _concerns(event, user_id, token_id):
                break


async def guard_stream(request: Request, events: AsyncIterator[str]) -> AsyncIterator[str]:
    """``events``, ended (after an ``unauthorized`` error event) once the token that opened
    the stream stops authenticating."""
    if getattr(request.state, "auth_token_id", None) is None:
        async for item in events:
            yield item
        return
    graph = request.app.state.graph
    async with graph.bus.subscribe(CHANNEL) as sub:
        watcher = asyncio.ensure_future(_until_invalid(request, sub))
        iterator = aiter(events)
        step: asyncio.Future[str] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(iterator))
                await asyncio.wait({step, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if step.done():
                    try:
                        item = step.result()
                    except StopAsyncIteration:
                        return
                    yield item
                    continue
                await cancel_and_wait(step)
                if watcher.exception() is None:
                    error = Unauthorized("the API token of this stream is no longer valid")
                    yield sse_event(error.to_dict(), event="error")
                return
        finally:
            # a stream closed by its client leaves the pending step behind: end it here,
            # or it finishes later with an exception nobody retrieves
            await cancel_and_wait(watcher, step)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
