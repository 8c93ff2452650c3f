"""The event bus: wake-up hints between parts of tether (and between replicas).

Events are JSON objects published on named channels. They are *hints*: a subscriber that
wakes up re-reads the database, which is the truth. Events can be dropped (slow subscriber,
lost connection, oversized payload), so nothing may depend on receiving every one.

- :class:`InProcessBus` — one process (SQLite mode, tests).
- :class:`~tether.db.pgbus.PostgresBus` (``db/pgbus.py``) — LISTEN/NOTIFY over one dedicated
  asyncpg connection, so replicas sharing a PostgreSQL database wake each other. Local
  subscribers receive local publications directly.

Payloads are delivered as JSON round-tripped copies (UUIDs and datetimes become strings), so
subscribers see the same types whichever bus and replica they are on. Two special payloads:
``{"truncated": True}`` (a remote payload was over PostgreSQL's size limit; re-read the
source) and ``{"reconnected": True}`` (the bus lost its connection and may have missed
events; re-read everything).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000
TRUNCATED: dict[str, Any] = {"truncated": True}
RECONNECTED: dict[str, Any] = {"reconnected": True}


class Subscription(Protocol):
    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, or None if none arrives within ``timeout`` seconds."""
        ...

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Events until the subscription's context exits."""
        ...


class EventBus(Protocol):
    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Publish ``payload`` on ``channel``. Never blocks on slow subscribers."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """Receive events published on ``channel`` while the context is open."""
        ...


def to_json_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=str, separators=(",", ":"))


_CLOSED = object()


class QueueSubscription:
    """A bounded queue of events for one subscriber; when full, the oldest event is dropped."""

    def __init__(self, channel: str, maxsize: int) -> None:
        self.channel = channel
        self.dropped = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        self._closed = False

    def deliver(self, payload: dict[str, Any]) -> bool:
        """Enqueue without blocking; returns False if an older event had to be dropped."""
        if self._closed:
            return True
        dropped = False
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            dropped = True
        self._queue.put_nowait(payload)
        return not dropped

    def close(self) -> None:
        self._closed = True
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)  # wakes a waiting get()/iterator

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        if self._closed and self._queue.empty():
            return None
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # keep later callers from blocking
            return None
        return item

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            item = await self.get()
            if item is None:
                return
            yield item


class LocalFanout:
    """Subscribers of this process by channel; the delivery half of both buses."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subs: dict[str, set[QueueSubscription]] = {}
        self.dropped = 0

    def channels(self) -> list[str]:
        return list(self._subs)

    def add(self, channel: str) -> tuple[QueueSubscription, bool]:
        """Register a subscriber; the flag says it is the channel's first."""
        sub = QueueSubscription(channel, self._queue_size)
        subs = self._subs.setdefault(channel, set())
        subs.add(sub)
        return sub, len(subs) == 1

    def remove(self, sub: QueueSubscription) -> bool:
        """Unregister; the flag says the channel has no subscribers left."""
        sub.close()
        subs = self._subs.get(sub.channel)
        if subs is None:
            return False
        subs.discard(sub)
        if not subs:
            del self._subs[sub.channel]
            return True
        return False

    def deliver(self, channel: str, payload: dict[str, Any]) -> None:
        for sub in tuple(self._subs.get(channel, ())):
            if not sub.deliver(payload):
                self.dropped += 1
                log.warning(
                    "event bus: slow subscriber on %r, dropped oldest event (%d so far)",
                    channel,
                    sub.dropped,
                )

    def deliver_all(self, payload: dict[str, Any]) -> None:
        for channel in self.channels():
            self.deliver(channel, payload)


class InProcessBus:
    """An :class:`EventBus` within one process: a bounded queue per subscriber."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._fanout = LocalFanout(queue_size)

    @property
    def dropped(self) -> int:
        """Events dropped because a subscriber's queue was full."""
        return self._fanout.dropped

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        self._fanout.deliver(channel, json.loads(to_json_payload(payload)))

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub, _ = self._fanout.add(channel)
        try:
            yield sub
        finally:
            self._fanout.remove(sub)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe(channel)
