"""Running the workspace's startup script once, streaming its output as session log frames.

The lifecycle goes ``starting`` → ``ready`` (exit 0), ``start_error`` (non-zero exit) or
``start_timeout`` (its process group is killed). Output lines are batched and flushed at
least every ``flush_interval_s`` while the script runs.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from pathlib import Path

from tether.agent.frames import Log
from tether.agent.lifecycle import LifecycleState
from tether.agent.processes import ProcessManager
from tether.cancellation import cancel_and_wait


class _LineBatcher:
    """Turns output chunks into complete lines, handed out in batches."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self.lines: list[str] = []

    def feed(self, data: bytes) -> None:
        text = self._partial + self._decoder.decode(data)
        text = text.replace("\r\n", "\n")
        *complete, self._partial = text.split("\n")
        self.lines.extend(complete)

    def finish(self) -> None:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest:
            self.lines.append(rest)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


async def run_startup_script(
    *,
    processes: ProcessManager,
    script: str | None,
    timeout_s: float,
    cwd: Path,
    report: Callable[[LifecycleState], None],
    emit: Callable[[Log], None],
    flush_interval_s: float = 0.25,
) -> LifecycleState:
    """Run ``script`` (if any) and report the lifecycle; returns the final state."""
    report(LifecycleState.STARTING)
    if not script or not script.strip():
        report(LifecycleState.READY)
        return LifecycleState.READY

    batcher = _LineBatcher()

    def flush() -> None:
        lines = batcher.take()
        if lines:
            emit(Log(source="startup_script", level="info", lines=lines))

    async def flusher() -> None:
        while True:
            await asyncio.sleep(flush_interval_s)
            flush()

    try:
        proc = await processes.spawn(script, cwd=cwd, listed=False, listener=batcher.feed)
    except OSError as exc:
        emit(Log(level="error", lines=[f"startup script could not start: {exc}"]))
        report(LifecycleState.START_ERROR)
        return LifecycleState.START_ERROR

    flush_task = asyncio.create_task(flusher(), name="startup-log-flush")
    try:
        timed_out = await proc.wait_or_kill(timeout_s)
    finally:
        await cancel_and_wait(flush_task)
    batcher.finish()
    flush()
    if timed_out:
        emit(Log(level="error", lines=[f"startup script timed out after {timeout_s:g}s"]))
        final = LifecycleState.START_TIMEOUT
    elif proc.exit_code == 0:
        final = LifecycleState.READY
    else:
        emit(Log(level="error", lines=[f"startup script exited with code {proc.exit_code}"]))
        final = LifecycleState.START_ERROR
    report(final)
    return final
