"""Time, injected.

Everything that stamps, expires or times out takes a :class:`Clock`. Production uses
:class:`SystemClock`; tests use :class:`tether.testing.clock.FakeClock`, whose sleeps only
end when the test advances time, so a 5 s delay takes no wall time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from tether.cancellation import cancel_and_wait

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current UTC time (timezone-aware)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for measuring durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


async def within(clock: Clock, seconds: float, aw: Awaitable[T]) -> T:
    """Await ``aw`` for at most ``seconds`` of ``clock`` time; then cancel it and raise
    :class:`TimeoutError`. (A clock timer, so tests drive deadlines with a fake clock.)"""
    task = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(timer, None if task.done() else task)
    if task.cancelled():
        raise TimeoutError(f"gave up after {seconds:g}s")
    return task.result()


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Normalise a datetime read from a database (SQLite drops the tzinfo) to aware UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
