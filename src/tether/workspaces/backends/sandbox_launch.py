"""Process plumbing of sandboxed local workspaces (blocking; callers run it in a thread):
finding the sandbox's PID-namespace init and the agent under it, the private runtime root,
and the session relay of workspaces without network."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from tether.errors import BackendError
from tether.workspaces.backends import procs
from tether.workspaces.backends.procs import Proc


def private_root(root: Path) -> None:
    """Create the runtime root (0711, ours) and refuse one someone else planted."""
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    st = root.lstat()
    if not root.is_dir() or root.is_symlink() or st.st_uid != os.geteuid():
        raise BackendError(f"runtime dir {root} is not a directory owned by this server")
    os.chmod(root, 0o711)


def proc(pid: int) -> Proc | None:
    ticks = procs.start_ticks(pid)
    return None if ticks is None else Proc(pid, ticks)


def read_init_pid(fd: int, timeout_s: float) -> int | None:
    """bwrap's ``--info-fd`` JSON → the host pid of the sandbox's PID-namespace init."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            continue  # not complete yet
    return None


def first_child(pid: int, timeout_s: float) -> int | None:
    """The first child of ``pid`` (the agent, under the sandbox's init), once it exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if procs.start_ticks(pid) is None:
            return None  # the init is gone: the agent never started
        children = _children(pid)
        if children:
            return children[0]
        time.sleep(0.002)
    return None


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: scan the parents
        pass
    except (OSError, ValueError):
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ppid(int(entry)) == pid:
            found.append(int(entry))
    return sorted(found)


def _ppid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
        return int(raw[raw.rfind(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def log_tail(path: Path, limit: int = 400) -> str:
    """The end of a log file, on one line, for an error message."""
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return " ".join(data.decode(errors="replace").split())


def read_inits(wdir: Path) -> list[Proc]:
    out: list[Proc] = []
    agents = wdir / "agents"
    if not agents.is_dir():
        return out
    for path in agents.glob("*.pid"):
        try:
            data = json.loads(path.read_text())
            pid, ticks = data.get("init_pid"), data.get("init_ticks")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(pid, int) and isinstance(ticks, int):
            out.append(Proc(pid, ticks))
    return out


def start_relay(
    server_url: str, wdir: Path, sock: Path, workspace_id: uuid.UUID, timeout_s: float
) -> None:
    """Start the session relay of a workspace without network (see
    :mod:`tether.workspaces.backends.relay`) and wait until its socket exists."""
    url = urlsplit(server_url)
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if url.scheme == "https" else 80)
    sock.unlink(missing_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env[procs.WORKSPACE_ENV] = str(workspace_id)  # stop finds it like an agent
    command = [sys.executable, "-m", "tether.workspaces.backends.relay"]
    with open(wdir / "relay.log", "ab") as out:
        relay = subprocess.Popen(
            [*command, str(sock), host, str(port)],
            cwd=wdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    threading.Thread(target=relay.wait, name=f"reap-relay-{relay.pid}", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not sock.exists():
        if relay.poll() is not None or time.monotonic() > deadline:
            relay.kill()
            raise BackendError(f"the session relay did not start; see {wdir / 'relay.log'}")
        time.sleep(0.005)
