"""What stalls the serving process's event loop, as metrics (issue #12, the open-loop
latency tail): how late a timer on the loop fires (``tether_event_loop_lag_seconds``) and
how long the garbage collector stops the process, by generation
(``tether_gc_pause_seconds``).

Every chat stream, turn and request of the process shares one event loop, so anything that
holds it — a long callback, a full garbage collection walking every tracked object, a
commit waiting for the disk — delays them all at once; the turn overhead histogram shows
the symptom, these two the cause. ``bench/openloop.py --stalls`` samples what held the
loop, with stacks, when these say it is held.

:class:`LoopWatch` is a background job of the server (``src/tether/server.py``): a timer
every ``interval_s`` (0.1 s: ten wake-ups a second, no measurable cost) records how late it
woke; a stall shorter than the interval is caught in proportion to its length, one longer
always. The collector's pauses come from ``gc.callbacks`` while the job runs.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from tether.observability.metrics import Metrics

INTERVAL_S = 0.1


class LoopWatch:
    """Records the loop's lag and the collector's pauses into ``metrics`` while :meth:`run`
    runs. ``clock`` (seconds, monotonic) times both; tests may replace it."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._metrics = metrics
        self._interval_s = interval_s
        self._clock = clock
        self._gc_started: float | None = None

    async def run(self) -> None:
        """Until cancelled."""
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                start = self._clock()
                await asyncio.sleep(self._interval_s)
                late = self._clock() - start - self._interval_s
                self._metrics.loop_lag.observe(max(0.0, late))
        finally:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = self._clock()
        elif self._gc_started is not None:
            pause = self._clock() - self._gc_started
            self._gc_started = None
            self._metrics.gc_pause.labels(str(info.get("generation", "?"))).observe(pause)
