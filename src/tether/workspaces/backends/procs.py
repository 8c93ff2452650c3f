"""Finding and signalling the processes of a local workspace through ``/proc`` (Linux).

A process belongs to a workspace when its environment holds ``TETHER_WORKSPACE_ID=<id>``:
the backend sets it on every agent and the agent passes it to every command, so even a
double-forked daemon in its own session is found. A process is identified by its pid *and*
its start time (clock ticks since boot), so a reused pid is never mistaken for ours.
All functions here are blocking; callers run them in a thread.
"""

from __future__ import annotations

import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
WORKSPACE_ENV = "TETHER_WORKSPACE_ID"


@dataclass(frozen=True)
class Proc:
    """A process seen at one moment: pid plus start time (stable across pid reuse)."""

    pid: int
    start_ticks: int


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def alive(proc: Proc) -> bool:
    """Whether this very process (not a later one reusing its pid) still runs."""
    return start_ticks(proc.pid) == proc.start_ticks


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or another user's process
        return False
    return marker in environ.split(b"\0")


def _parent(pid: int) -> int | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
        return int(raw[raw.rfind(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _protected() -> set[int]:
    # Never signal ourselves or our ancestors, e.g. a server that itself runs in a workspace.
    pids = {os.getpid()}
    pid: int | None = os.getppid()
    while pid is not None and pid > 1 and pid not in pids:
        pids.add(pid)
        pid = _parent(pid)
    return pids


def workspace_processes(workspace_id: uuid.UUID, recorded: list[Proc]) -> list[Proc]:
    """Live processes of the workspace: the ``recorded`` ones still alive, plus every process
    whose environment names the workspace."""
    marker = f"{WORKSPACE_ENV}={workspace_id}".encode()
    protected = _protected()
    found = {p.pid: p for p in recorded if p.pid not in protected and alive(p)}
    for entry in os.listdir(_PROC):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in found or pid in protected or not _has_marker(pid, marker):
            continue
        ticks = start_ticks(pid)
        if ticks is not None:
            found[pid] = Proc(pid, ticks)
    return sorted(found.values(), key=lambda p: p.pid)


def send(proc: Proc, sig: signal.Signals) -> str | None:
    """Signal the process (its whole group when it leads one) if it is still the same
    process; returns an error text when the signal could not be sent, else None."""
    if not alive(proc):
        return None
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        return None
    except PermissionError as exc:
        return f"pid {proc.pid}: {exc.strerror}"
    return None


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(_PROC / str(pid) / "ns" / "pid")
    except OSError:
        return None


def _inner_pid(pid: int) -> int | None:
    """The pid of ``pid`` in its innermost PID namespace (last ``NSpid`` field)."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_pid(member: int, inner: int) -> int | None:
    """The host pid of the process that is ``inner`` inside the PID namespace of host
    process ``member`` (a sandboxed agent), or None when there is none."""
    ns = _pid_ns(member)
    if ns is None:
        return None
    for entry in os.listdir(_PROC):
        if entry.isdigit() and _inner_pid(int(entry)) == inner and _pid_ns(int(entry)) == ns:
            return int(entry)
    return None
