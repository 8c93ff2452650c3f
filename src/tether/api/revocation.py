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
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import Depends, Request

from tether.api.deps import BusDep, ClockDep, SettingsDep, UserStoreDep
from tether.api.sse import sse_event
from tether.cancellation import cancel_and_wait
from tether.channels import IDENTITY
from tether.clock import Clock
from tether.db.pubsub import EventBus
from tether.db.users import UserStore
from tether.errors import Unauthorized

CHANNEL = IDENTITY  # the bus channel (defined in tether.channels)


async def publish_revoked(
    bus: EventBus, *, user_id: uuid.UUID, token_id: uuid.UUID | None = None
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


@dataclass
class StreamGuard:
    """Ends a request's SSE stream once its API token stops authenticating."""

    users: UserStore
    bus: EventBus
    clock: Clock
    recheck_s: float

    def stream(self, request: Request, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """``events``, ended (after an ``unauthorized`` error event) once the token that
        opened the stream stops authenticating."""
        return _guarded(self, request, events)


async def stream_guard(
    users: UserStoreDep, bus: BusDep, clock: ClockDep, settings: SettingsDep
) -> StreamGuard:
    return StreamGuard(users, bus, clock, settings.stream_auth_recheck_s)


StreamGuardDep = Annotated[StreamGuard, Depends(stream_guard)]


async def _until_invalid(guard: StreamGuard, request: Request, sub: Any) -> None:
    """Return once the request's token no longer authenticates."""
    user_id, token_id = request.state.auth_user_id, request.state.auth_token_id
    recheck_s = guard.recheck_s
    clock = guard.clock
    while True:
        valid = await guard.users.token_valid(token_id)
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


_END = object()  # the stream's events ended
_REVOKED = object()  # the token stopped authenticating


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _guarded(
    guard: StreamGuard, request: Request, events: AsyncIterator[str]
) -> AsyncIterator[str]:
    """The events pass through a one-slot queue from a producer task: the consumer waits on
    that queue only, and the token watcher ends the stream by putting :data:`_REVOKED` in
    front. Per event that is one queue hand-off (no task and no ``asyncio.wait`` per event);
    the slot keeps the socket's back-pressure on the producer."""
    if getattr(request.state, "auth_token_id", None) is None:
        async for item in events:
            yield item
        return
    slot: asyncio.Queue[object] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async for item in events:
                await slot.put(item)
            await slot.put(_END)
        except Exception as exc:  # handed to the consumer, which raises it
            await slot.put(_Failed(exc))
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def on_watcher_done(watcher: asyncio.Future[None]) -> None:
        if watcher.cancelled():
            return
        while not slot.empty():  # nothing more of the stream once the token is invalid
            slot.get_nowait()
        slot.put_nowait(_REVOKED if watcher.exception() is None else _END)

    async with guard.bus.subscribe(CHANNEL) as sub:
        watcher = asyncio.ensure_future(_until_invalid(guard, request, sub))
        producer = asyncio.ensure_future(produce())
        watcher.add_done_callback(on_watcher_done)
        try:
            while True:
                got = await slot.get()
                if got is _END:
                    return
                if got is _REVOKED:
                    error = Unauthorized("the API token of this stream is no longer valid")
                    yield sse_event(error.to_dict(), event="error")
                    return
                if isinstance(got, _Failed):
                    raise got.exc
                yield cast(str, got)
        finally:
            # a stream closed by its client (or ended here) leaves the producer and the
            # watcher behind: end them here, or they finish later unobserved
            watcher.remove_done_callback(on_watcher_done)
            await cancel_and_wait(watcher, producer)
