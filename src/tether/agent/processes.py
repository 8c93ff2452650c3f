"""Every process the agent starts: foreground commands, background processes, the startup script.

Each runs ``bash -c`` in its own process group (so a kill reaches its children) with stdin
from /dev/null and stdout+stderr merged into one pipe read by the event loop. Nothing here
blocks the loop: exits and output arrive through :class:`tether.agent.child.Child`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tether.agent.child import Child, has_controlling_terminal, pidfd_usable
from tether.agent.child import start as start_child
from tether.agent.state import AgentState
from tether.agent.text import cap_head, cap_tail, decode
from tether.agent.wire import ExecResult, ProcessInfo, ProcessOutput
from tether.errors import NotFound

log = logging.getLogger("tether.agent")

OUTPUT_CAP_BYTES = 32 * 1024
KEEP_BYTES = 1024 * 1024
# Finished foreground commands kept for process_output (the server may have lost the call).
KEEP_FINISHED_FOREGROUND = 16  # each keeps up to ~2 MiB of output
# How long a finished foreground command may keep its output pipe open (a child it put in the
# background holds it) before we answer with what we have.
_EOF_LINGER_S = 0.5
_KILL_WAIT_S = 5.0

OutputListener = Callable[[bytes], None]


class _Output:
    """The first ``head_cap`` bytes and the last ``keep`` bytes of a process's output."""

    def __init__(self, head_cap: int, keep: int) -> None:
        self._head_cap = head_cap
        self._keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_cap + 4 - len(self.head)  # +4: room to find a UTF-8 boundary
        if room > 0:
            self.head += data[:room]
        self.tail += data
        if len(self.tail) > self._keep * 2:  # trim in bulk, not on every chunk
            del self.tail[: len(self.tail) - self._keep]

    def last(self, cap: int) -> tuple[bytes, bool]:
        kept = bytes(self.tail[-self._keep :])
        data, cut = cap_tail(kept, cap)
        return data, cut or self.total > len(data)


@dataclass
class ManagedProcess:
    """One started process group; ``pgid`` equals the leader's pid."""

    id: str
    command: str
    started_at: datetime
    pgid: int
    listed: bool
    child: Child
    output: _Output
    closed: bool = field(default=False)
    # Streamed foreground commands: readable by id (not listed); the run task owns the
    # deadline, so the command keeps its timeout even when the caller went away.
    foreground: bool = field(default=False)
    result: asyncio.Future[ExecResult] | None = field(default=None)

    @property
    def running(self) -> bool:
        return not self.child.exited.is_set()

    @property
    def exit_code(self) -> int | None:
        rc = self.child.returncode
        if rc is None:
            return None
        return rc if rc >= 0 else 128 - rc  # killed by signal N → 128+N, as a shell reports it

    def send(self, sig: int) -> bool:
        """Signal the whole group; False when no member is left."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:  # the pgid was reused by a process we do not own
            return False
        return True

    async def wait_or_kill(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the process to exit, else SIGKILL its group; then
        give its output a moment to drain (a background child may hold the pipe open).
        Returns whether it timed out. Cancellation kills the group too."""
        # asyncio.timeout, not wait_for: no task per wait (a command's round trip counts).
        child = self.child
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    await child.exited.wait()
            except TimeoutError:
                timed_out = True
                self.send(signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_KILL_WAIT_S):
                        await child.exited.wait()
            if not child.eof.is_set():  # usually is: no timer for what is already done
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_EOF_LINGER_S):
                        await child.eof.wait()
        except asyncio.CancelledError:
            self.send(signal.SIGKILL)
            raise
        return timed_out


class ProcessManager:
    """Starts, tracks and stops the agent's processes. Close it to kill them all."""

    def __init__(
        self,
        state: AgentState,
        *,
        output_cap: int = OUTPUT_CAP_BYTES,
        keep_bytes: int = KEEP_BYTES,
        kill_grace_s: float = 2.0,
    ) -> None:
        self._state = state
        self._cap = output_cap
        self._keep = keep_bytes
        self._grace = kill_grace_s
        self._procs: dict[str, ManagedProcess] = {}
        self._use_pidfd = pidfd_usable()
        # A command must never reach a terminal. An agent with no controlling terminal (any
        # agent a backend starts: a new session, no tty) gives each command a new process
        # group in the agent's own session, where a command can neither find a terminal nor
        # acquire one (only a session leader can). Only an agent run from a terminal makes
        # each command a new session to shed it. Why not always a new session: with
        # scheduler autogroups (kernel.sched_autogroup_enabled, on by default in most
        # distributions) setsid() also makes a new scheduling group, which on a busy machine
        # waits its turn where a child in the agent's group runs at once — a loaded 2-core
        # machine measured ~0.2-0.8 ms more per command at the median (issue #12).
        self._new_session = has_controlling_terminal()
        self._runs: set[asyncio.Task[None]] = set()
        self._finished_foreground: deque[str] = deque()
        self._closing = False

    async def spawn(
        self,
        command: str,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        listed: bool = True,
        listener: OutputListener | None = None,
    ) -> ManagedProcess:
        """Start ``bash -c command`` in a new process group and track it until it is gone."""
        if self._closing:
            raise RuntimeError("the agent is shutting down")
        output = _Output(self._cap, self._keep)
        feed = output.feed
        if listener is not None:

            def on_data(data: bytes) -> None:
                feed(data)
                listener(data)
        else:
            on_data = feed
        child = start_child(
            ("bash", "-c", command),
            cwd=cwd,
            env=self._state.command_env(env),
            on_data=on_data,
            use_pidfd=self._use_pidfd,
            new_session=self._new_session,
        )
        proc = ManagedProcess(
            id=secrets.token_hex(6),
            command=command,
            started_at=self._state.clock.now(),
            pgid=child.pid,
            listed=listed,
            child=child,
            output=output,
        )
        self._procs[proc.id] = proc
        child.on_done = functools.partial(self._finished, proc)
        return proc

    def _finished(self, proc: ManagedProcess) -> None:
        # The leader exited and the pipe hit EOF: its fds are closed; forget what is not kept.
        proc.closed = True
        if proc.foreground:
            self._finished_foreground.append(proc.id)
            while len(self._finished_foreground) > KEEP_FINISHED_FOREGROUND:
                self._procs.pop(self._finished_foreground.popleft(), None)
        elif not proc.listed:
            self._procs.pop(proc.id, None)

    async def run(
        self,
        command: str,
        *,
        timeout_s: float,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run a foreground command to completion or until ``timeout_s`` (then kill its group)."""
        clock = self._state.clock
        start = clock.monotonic()
        proc = await self.spawn(command, cwd=cwd, env=env, listed=False)
        timed_out = await proc.wait_or_kill(timeout_s)
        head, truncated = cap_head(bytes(proc.output.head), self._cap)
        truncated = truncated or proc.output.total > len(head)
        wall_ms = int((clock.monotonic() - start) * 1000)
        if timed_out:
            return ExecResult(
                exit_code=-1,
                output=decode(head),
                truncated=truncated,
                wall_ms=wall_ms,
                timed_out=True,
                error=f"command timed out after {timeout_s:g}s",
            )
        code = proc.exit_code if proc.exit_code is not None else -1
        return ExecResult(
            exit_code=code,
            output=decode(head),
            truncated=truncated,
            wall_ms=wall_ms,
            timed_out=False,
            error=None,
        )

    async def start_foreground(
        self,
        command: str,
        *,
        timeout_s: float,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        on_output: Callable[[], None] | None = None,
    ) -> ManagedProcess:
        """Start a foreground command whose record outlives the request: a task of this
        manager enforces ``timeout_s`` and sets ``proc.result``; the output and the result
        stay readable by id (``output``) until the manager keeps newer ones instead.
        ``on_output`` is called (from the event loop) whenever output arrives."""

        def listener(_data: bytes) -> None:
            if on_output is not None:
                on_output()

        clock = self._state.clock
        start = clock.monotonic()
        proc = await self.spawn(command, cwd=cwd, env=env, listed=False, listener=listener)
        proc.foreground = True
        proc.result = asyncio.get_running_loop().create_future()

        async def finish() -> None:
            timed_out = await proc.wait_or_kill(timeout_s)
            assert proc.result is not None
            if not proc.result.done():
                proc.result.set_result(self._result(proc, timed_out, timeout_s, start))

        task = asyncio.create_task(finish(), name=f"foreground-{proc.id}")
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return proc

    def _result(
        self, proc: ManagedProcess, timed_out: bool, timeout_s: float, start: float
    ) -> ExecResult:
        head, truncated = cap_head(bytes(proc.output.head), self._cap)
        truncated = truncated or proc.output.total > len(head)
        wall_ms = int((self._state.clock.monotonic() - start) * 1000)
        code = proc.exit_code if proc.exit_code is not None else -1
        return ExecResult(
            exit_code=-1 if timed_out else code,
            output=decode(head),
            truncated=truncated,
            wall_ms=wall_ms,
            timed_out=timed_out,
            error=f"command timed out after {timeout_s:g}s" if timed_out else None,
            process_id=proc.id if proc.foreground else None,
        )

    @property
    def output_cap(self) -> int:
        return self._cap

    def get(self, process_id: str) -> ManagedProcess:
        proc = self._procs.get(process_id)
        if proc is None or not (proc.listed or proc.foreground):
            raise NotFound(f"no process with id {process_id!r}")
        return proc

    def list(self) -> list[ProcessInfo]:
        return [
            ProcessInfo(
                process_id=p.id,
                command=p.command,
                running=p.running,
                exit_code=p.exit_code,
                started_at=p.started_at,
            )
            for p in sorted(self._procs.values(), key=lambda p: p.started_at)
            if p.listed
        ]

    def output(self, process_id: str) -> ProcessOutput:
        proc = self.get(process_id)
        data, truncated = proc.output.last(self._cap)
        return ProcessOutput(
            process_id=proc.id,
            running=proc.running,
            exit_code=proc.exit_code,
            output=decode(data),
            truncated=truncated,
        )

    def signal(self, process_id: str, name: str) -> str:
        """Send ``terminate`` (SIGTERM) or ``kill`` (SIGKILL) to a process's group."""
        proc = self.get(process_id)
        sig = signal.SIGKILL if name == "kill" else signal.SIGTERM
        if proc.send(sig):
            return f"sent {name} to process {proc.id}"
        return f"process {proc.id} has already exited"

    async def close(self) -> None:
        """Terminate every process group (TERM, then KILL after the grace) and stop tracking."""
        self._closing = True
        procs = list(self._procs.values())
        live = [p for p in procs if p.send(signal.SIGTERM)]
        if live:
            waits = [asyncio.ensure_future(p.child.exited.wait()) for p in live]
            try:
                await asyncio.wait(waits, timeout=self._grace)
            finally:
                for w in waits:
                    w.cancel()
            for p in live:
                p.send(signal.SIGKILL)  # also reaches children that outlived their leader
            waits = [asyncio.ensure_future(p.child.exited.wait()) for p in live]
            try:
                await asyncio.wait(waits, timeout=_KILL_WAIT_S)
            finally:
                for w in waits:
                    w.cancel()
        for task in list(self._runs):
            task.cancel()
        for p in procs:
            if not p.closed:
                p.child.close()
        self._procs.clear()
