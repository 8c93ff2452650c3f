"""A clock whose time only moves when the test says so.

``await clock.sleep(5)`` parks the caller until a test calls ``clock.advance(5)`` (or more),
so code with 5 s delays and 30 s timeouts runs in no wall time and deterministically::

    clock = FakeClock()
    task = asyncio.create_task(code_under_test(clock))
    await clock.wait_for_sleepers(1)   # the code is now sleeping
    clock.advance(5)                   # wakes it
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 4, 22, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """Implements :class:`tether.clock.Clock`; time advances only through :meth:`advance`."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._start = start
        self._offset = 0.0
        self._seq = itertools.count()
        # (deadline, sequence, future): the sequence keeps equal deadlines in sleep order.
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._slept = asyncio.Event()  # set whenever a new sleeper parks

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return self._offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            # Still a scheduling point, like asyncio.sleep(0).
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self._offset + seconds, next(self._seq), fut))
        self._slept.set()
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()  # a cancelled sleeper no longer counts (see ``sleepers``)

    @property
    def sleepers(self) -> int:
        """How many coroutines are currently sleeping on this clock."""
        return sum(1 for _, _, fut in self._heap if not fut.done())

    def advance(self, seconds: float) -> None:
        """Move time forward and wake, in deadline order, every sleeper whose deadline has
        passed. The woken coroutines run when the caller next yields to the loop."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._offset + seconds
        while self._heap and self._heap[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._heap)
            self._offset = max(self._offset, deadline)
            if not fut.done():
                fut.set_result(None)
        self._offset = target

    def set(self, when: datetime) -> None:
        """Advance to an absolute time (must not be in the past)."""
        self.advance((when - self.now()).total_seconds())

    async def wait_for_sleepers(self, count: int = 1, timeout: float = 2.0) -> None:
        """Wait (real time, at most ``timeout`` s) until at least ``count`` coroutines
        sleep on this clock."""
        async with asyncio.timeout(timeout):
            while self.sleepers < count:
                self._slept.clear()
                await self._slept.wait()


async def settle(rounds: int = 20) -> None:
    """Let the event loop run ``rounds`` iterations (ready callbacks, woken sleepers)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
