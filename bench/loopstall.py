"""What held the server's event loop (``bench/openloop.py --stalls``): a task on the loop
wakes every ``interval_s`` and records how late it woke (the loop's lag), and a sampling
thread takes the loop thread's stack every ``sample_s`` while the loop has not checked in
for ``stall_s`` — so each stall comes with the code that ran (or waited) during it.

A stall's stacks are collapsed (outermost frame first, ``file:function:line`` joined by
``;``) and counted; the most frequent ones are what held the loop. The sampler needs the
GIL to read the stack: a stall inside C code that keeps the GIL (the garbage collector)
shows the Python frame that called into it, sampled when the GIL is handed over (every
``sys.getswitchinterval()``, 5 ms).

Times are :func:`bench.benchlib.now` (``CLOCK_MONOTONIC``), so stalls can be laid beside
the client's send and end times of a slow turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bench.benchlib import now, pct


@dataclass
class Stall:
    """One stretch of ``duration`` seconds from ``start`` in which the loop did not check in
    (measured by the loop's own task), and the loop thread's stacks sampled during it."""

    start: float
    duration: float = 0.0
    stacks: Counter[str] = field(default_factory=Counter)

    def top(self, n: int = 3, depth: int = 12) -> list[tuple[int, str]]:
        """The ``n`` most sampled stacks, each cut to its innermost ``depth`` frames."""
        return [(c, ";".join(s.split(";")[-depth:])) for s, c in self.stacks.most_common(n)]


def _collapse(frame: Any) -> str:
    out: list[str] = []
    while frame is not None:
        code = frame.f_code
        name = code.co_filename.rsplit("site-packages/", 1)[-1].rsplit("/src/", 1)[-1]
        out.append(f"{name}:{code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return ";".join(reversed(out))


class LoopStallMonitor:
    """Lateness of a ``interval_s`` tick on the running loop, and the stacks of each stall
    longer than ``stall_s`` (see the module docstring). Use as ``async with``."""

    def __init__(
        self, *, interval_s: float = 0.005, stall_s: float = 0.02, sample_s: float = 0.002
    ) -> None:
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.sample_s = sample_s
        self.lags: list[tuple[float, float]] = []  # (woke at, seconds late)
        self.stalls: list[Stall] = []
        self._beat = now()
        self._sampled: dict[float, Stall] = {}  # the beat a stall followed → its samples
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    async def _tick(self) -> None:
        while True:
            before = now()
            self._beat = before
            await asyncio.sleep(self.interval_s)
            woke = now()
            self._beat = woke
            late = woke - before - self.interval_s
            self.lags.append((woke, late))
            if late >= self.stall_s:
                stall = self._sampled.pop(before, None) or Stall(before)
                stall.duration = late
                self.stalls.append(stall)

    def _sample(self) -> None:
        while not self._stop.wait(self.sample_s):
            beat = self._beat
            if now() - beat < self.stall_s:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            stall = self._sampled.setdefault(beat, Stall(beat))
            stall.stacks[_collapse(frame)] += 1

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[LoopStallMonitor]:
        """Watch the running loop while the block is open."""
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        sampler = threading.Thread(target=self._sample, name="loop-stall-sampler", daemon=True)
        sampler.start()
        tick = asyncio.create_task(self._tick(), name="loop-stall-tick")
        try:
            yield self
        finally:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
            self._stop.set()
            sampler.join(timeout=5.0)

    def reset(self) -> None:
        self.lags.clear()
        self.stalls.clear()
        self._sampled.clear()

    def during(self, start: float, end: float) -> list[Stall]:
        """The stalls that overlap ``[start, end]``."""
        return [s for s in self.stalls if s.start <= end and s.start + s.duration >= start]

    def figures(self) -> dict[str, Any]:
        """Lag percentiles and stall counts for the bench's JSON."""
        ms = [late * 1000 for _, late in self.lags] or [0.0]
        return {
            "loop_lag_ms_p50": round(pct(ms, 50), 2),
            "loop_lag_ms_p99": round(pct(ms, 99), 2),
            "loop_lag_ms_max": round(max(ms), 1),
            "loop_stalls": len(self.stalls),
            "loop_stall_ms_total": round(sum(s.duration for s in self.stalls) * 1000, 1),
        }

    def report(self, n: int = 5) -> str:
        """The ``n`` longest stalls with their top stacks, as text."""
        lines: list[str] = []
        for stall in sorted(self.stalls, key=lambda s: -s.duration)[:n]:
            samples = sum(stall.stacks.values())
            ms = stall.duration * 1000
            lines.append(f"  stall {ms:.1f} ms at {stall.start:.3f} ({samples} samples)")
            for count, stack in stall.top():
                lines.append(f"    {count}× {stack}")
        return "\n".join(lines)
