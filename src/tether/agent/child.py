"""One child process of the agent, watched by the event loop without asyncio's subprocess layer.

Why not ``loop.subprocess_exec``: for a short command its machinery was most of the agent's
own share of a round trip — a transport and pipe transport per command, a coroutine and
waiter to connect the pipe, the exit handed over through ``call_soon_threadsafe`` (a write to
the loop's self-pipe and a loop iteration to read it back) and a few ``call_soon`` hops each
for the exit and the end of output (issue #12). Here the output pipe and the exit are two
file descriptors registered with the loop directly, and the exit is reaped as soon as the
output ends: the waiter of a command resumes one loop iteration after the command is gone.

The exit is learnt through a pidfd (Linux ≥ 5.3); where ``pidfd_open`` is missing or refused
(an old kernel, a seccomp filter), a thread blocked in ``waitpid`` for that child hands the
status back, as asyncio's ``ThreadedChildWatcher`` does. Only this object reaps its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger("tether.agent")

# One read per readable event; asyncio's pipe transport reads up to the same.
READ_BYTES = 256 * 1024
# Returned for a child someone else reaped (asyncio reports the same in that case).
UNKNOWN_EXIT = 255


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal (``/dev/tty`` opens)."""
    try:
        # O_NONBLOCK: a serial-line terminal's open may otherwise wait for its carrier.
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:  # ENXIO: none; ENOENT/EACCES: none a command could reach either
        return False
    os.close(fd)
    return True


def pidfd_usable() -> bool:
    """Whether this kernel (and any seccomp filter) lets the agent open pidfds."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class Child:
    """A started process: its merged stdout+stderr pipe and its exit, watched by the loop.

    ``on_data`` gets each chunk of output; ``on_done``, when set, is called once the process
    has exited *and* its output reached EOF (its fds are closed by then). ``exited`` and
    ``eof`` are set as each happens; ``returncode`` follows
    :attr:`subprocess.Popen.returncode` (negative: killed by that signal).
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        read_fd: int,
        *,
        on_data: Callable[[bytes], None],
        use_pidfd: bool,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self.exited = asyncio.Event()
        self.eof = asyncio.Event()
        self._on_data = on_data
        self.on_done: Callable[[], None] | None = None
        self._reported = False
        self._fd = read_fd
        self._pidfd = -1
        os.set_blocking(read_fd, False)
        self._loop.add_reader(read_fd, self._read)
        if use_pidfd:
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except OSError:  # refused after all (seccomp): fall back, as below
                self._pidfd = -1
        if self._pidfd >= 0:
            self._loop.add_reader(self._pidfd, self._pidfd_readable)
        else:
            waiter = threading.Thread(
                target=self._wait_blocking, name=f"waitpid-{self.pid}", daemon=True
            )
            waiter.start()

    @property
    def done(self) -> bool:
        return self.exited.is_set() and self.eof.is_set()

    def _read(self) -> None:
        try:
            data = os.read(self._fd, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # not expected from a pipe; treat as its end
            log.warning("reading the output of process %d failed: %s", self.pid, exc)
            data = b""
        if data:
            try:
                self._on_data(data)
            except Exception:  # a consumer bug must not kill the pipe
                log.exception("output listener failed")
            return
        self._close_pipe()
        self.eof.set()
        # A shell closes its output as it exits: its exit is usually reapable already, so
        # take it now rather than on the pidfd's own wake-up, often one loop pass later.
        if self._pidfd >= 0:
            self._pidfd_readable()
        self._maybe_done()

    def _pidfd_readable(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, -1
        if pid == 0:  # not exited (yet): keep watching
            return
        self._stop_pidfd()
        self._exited(UNKNOWN_EXIT if status == -1 else os.waitstatus_to_exitcode(status))

    def _wait_blocking(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = UNKNOWN_EXIT
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._exited, code)

    def _exited(self, code: int) -> None:
        if self.exited.is_set():
            return
        self.returncode = code
        # Popen must not reap this pid again, nor warn that it is "still running".
        self._popen.returncode = code
        self.exited.set()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.done and self.on_done is not None and not self._reported:
            self._reported = True
            try:
                self.on_done()
            except Exception:
                log.exception("process %d: done callback failed", self.pid)

    def _close_pipe(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _stop_pidfd(self) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def close(self) -> None:
        """Stop reading its output; a child still running is SIGKILLed (its owner signalled
        the group already) and still reaped when it is gone."""
        self._close_pipe()
        if not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def start(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_data: Callable[[bytes], None],
    use_pidfd: bool,
    new_session: bool,
) -> Child:
    """Start ``argv`` as the leader of a new process group (so a group kill reaches its
    children) — of a new session too when ``new_session`` — stdin from /dev/null, stdout and
    stderr into one pipe. Raises :class:`OSError` when it cannot start (no such directory, no
    such program), like :class:`subprocess.Popen`."""
    read_fd, write_fd = os.pipe()  # both close-on-exec; the child gets write_fd as 1 and 2
    try:
        # No preexec_fn, user or group: CPython starts the child with vfork.
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            cwd=cwd,
            env=env,
            start_new_session=new_session,
            process_group=None if new_session else 0,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return Child(popen, read_fd, on_data=on_data, use_pidfd=use_pidfd)
