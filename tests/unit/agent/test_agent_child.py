"""tether.agent.child: a real ``bash -c`` child watched through a pidfd or a waitpid thread."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import warnings
from pathlib import Path

import pytest

from tether.agent import child as child_mod
from tether.agent.child import Child, pidfd_usable, start

pytestmark = pytest.mark.skipif(not pidfd_usable(), reason="needs pidfd_open (Linux >= 5.3)")

DEADLINE_S = 10.0  # generous: a loaded machine; the old and new paths finish in milliseconds
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _start(
    command: str, cwd: Path, *, use_pidfd: bool, chunks: list[bytes], new_session: bool = False
) -> Child:
    return start(
        ("bash", "-c", command),
        cwd=cwd,
        env=ENV,
        on_data=chunks.append,
        use_pidfd=use_pidfd,
        new_session=new_session,
    )


async def _finish(c: Child) -> None:
    async with asyncio.timeout(DEADLINE_S):
        await c.exited.wait()
        await c.eof.wait()


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "waitpid-thread"])
async def test_output_exit_code_and_done_callback(tmp_path: Path, use_pidfd: bool) -> None:
    chunks: list[bytes] = []
    c = _start("pwd; echo err >&2; exit 3", tmp_path, use_pidfd=use_pidfd, chunks=chunks)
    calls: list[int] = []
    c.on_done = lambda: calls.append(1)
    await _finish(c)
    assert calls == [1]  # once: the exit may be taken on EOF and seen again on the pidfd
    assert c.returncode == 3
    assert b"".join(chunks) == f"{tmp_path}\nerr\n".encode()


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "waitpid-thread"])
async def test_killed_by_a_signal_is_a_negative_returncode(tmp_path: Path, use_pidfd: bool) -> None:
    c = _start("kill -9 $$", tmp_path, use_pidfd=use_pidfd, chunks=[])
    await _finish(c)
    assert c.returncode == -signal.SIGKILL


async def test_pidfd_watch_starts_no_thread(tmp_path: Path) -> None:
    """The point of the pidfd: no thread per command (asyncio 3.11's default starts one)."""
    # threads of earlier tests may still be ending: only a thread started here counts
    before = set(threading.enumerate())
    c = _start("sleep 0.2", tmp_path, use_pidfd=True, chunks=[])
    assert set(threading.enumerate()) - before == set()
    await _finish(c)
    assert c.returncode == 0


async def test_refused_pidfd_falls_back_to_a_waitpid_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pidfd_open refused after the start-up probe (a seccomp filter): the exit still arrives."""

    def refuse(pid: int, flags: int = 0) -> int:
        raise PermissionError("pidfd_open refused")

    monkeypatch.setattr(child_mod.os, "pidfd_open", refuse)
    c = _start("exit 7", tmp_path, use_pidfd=True, chunks=[])
    await _finish(c)
    assert c.returncode == 7


async def test_a_background_child_holding_the_pipe_delays_eof_not_exit(tmp_path: Path) -> None:
    c = _start("sleep 0.5 & echo started", tmp_path, use_pidfd=True, chunks=[])
    async with asyncio.timeout(DEADLINE_S):
        await c.exited.wait()
    assert c.returncode == 0
    assert not c.eof.is_set()  # `sleep` still holds the write end
    async with asyncio.timeout(DEADLINE_S):
        await c.eof.wait()


async def test_reaped_popen_does_not_warn_or_reap_again(tmp_path: Path) -> None:
    c = _start("true", tmp_path, use_pidfd=True, chunks=[])
    await _finish(c)
    popen = c._popen
    assert popen.returncode == 0  # Popen knows: its __del__ neither warns nor re-reaps
    del popen, c
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()


async def test_close_kills_a_running_child_and_it_is_still_reaped(tmp_path: Path) -> None:
    c = _start("sleep 30", tmp_path, use_pidfd=True, chunks=[])
    c.close()
    async with asyncio.timeout(DEADLINE_S):
        await c.exited.wait()
    assert c.returncode == -signal.SIGKILL
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(c.pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: does not block)


async def test_missing_directory_raises_and_leaks_no_fd(tmp_path: Path) -> None:
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        _start("true", tmp_path / "missing", use_pidfd=True, chunks=[])
    assert set(os.listdir("/proc/self/fd")) == fds


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "waitpid-thread"])
async def test_output_closed_before_exit_still_reports_the_exit(
    tmp_path: Path, use_pidfd: bool
) -> None:
    """EOF first (the reap tried on EOF finds it running), the exit later: still seen once."""
    c = _start("exec >&- 2>&-; sleep 0.3; exit 4", tmp_path, use_pidfd=use_pidfd, chunks=[])
    calls: list[int] = []
    c.on_done = lambda: calls.append(1)
    async with asyncio.timeout(DEADLINE_S):
        await c.eof.wait()
    assert not c.exited.is_set()
    await _finish(c)
    assert c.returncode == 4
    assert calls == [1]
