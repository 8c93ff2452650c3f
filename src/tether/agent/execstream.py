"""The agent side of a streamed foreground exec (format in :mod:`tether.agentconn.execstream`).

The command is a foreground record of the :class:`~tether.agent.processes.ProcessManager`:
its timeout is enforced there, not by this response, so a server that goes away (or an
agent that was frozen for a while) does not lose the command — its output stays readable
with ``GET /processes/<id>/output``.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tether.agent.http import Response
from tether.agent.processes import ManagedProcess, ProcessManager

# Coalesce output: at most one line per this many seconds while output keeps coming.
_FLUSH_S = 0.05


async def exec_stream_response(
    processes: ProcessManager,
    command: str,
    *,
    timeout_s: float,
    cwd: Path,
    env: Mapping[str, str] | None,
) -> Response:
    """Start ``command`` now (so spawn errors are still a normal error response) and stream
    its id, its output and its result."""
    wake = asyncio.Event()
    proc = await processes.start_foreground(
        command, timeout_s=timeout_s, cwd=cwd, env=env, on_output=wake.set
    )
    return Response(
        200,
        content_type="application/x-ndjson",
        stream=_lines(proc, wake, processes.output_cap),
    )


async def _lines(proc: ManagedProcess, wake: asyncio.Event, cap: int) -> AsyncIterator[bytes]:
    assert proc.result is not None
    yield _line({"process_id": proc.id})
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    sent = 0
    while True:
        done = proc.result.done()
        head = proc.output.head
        if sent < min(len(head), cap):
            chunk = bytes(head[sent:cap])
            sent += len(chunk)
            text = decoder.decode(chunk)
            if text:
                yield _line({"output": text})
        if done:
            break
        wake.clear()
        waiter = asyncio.ensure_future(wake.wait())
        try:
            waits: set[asyncio.Future[Any]] = {waiter, proc.result}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not proc.result.done():
            await asyncio.sleep(_FLUSH_S)  # coalesce a burst of output into one line
    yield _line({"result": asdict(proc.result.result())})


def _line(frame: dict[str, object]) -> bytes:
    return json.dumps(frame).encode() + b"\n"
