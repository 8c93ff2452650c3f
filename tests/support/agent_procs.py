"""Helpers that run real ``python -m tether.agent`` processes (imported by the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import sys
import termios
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from tether.agentconn import AgentClient

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 8.0


@dataclass
class RunningAgent:
    proc: asyncio.subprocess.Process
    address: str
    secret: str
    home: Path
    project: Path
    stderr_path: Path

    def client(self, **kwargs: float) -> AgentClient:
        return AgentClient(
            self.address,
            self.secret,
            connect_timeout=kwargs.get("connect_timeout", 2.0),
            request_timeout=kwargs.get("request_timeout", 10.0),
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


async def start_agent(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    *,
    without: Collection[str] = (),
    tty_slave: int | None = None,
) -> RunningAgent:
    """Start an agent in a new session with HOME=tmp_path/home and wait for its address
    line. ``without``: variables of this process's environment the agent does not get (as a
    backend's allowlist drops them); ``tty_slave``: that pty becomes the agent's controlling
    terminal (as for an agent run by hand in a terminal)."""
    home = tmp_path / "home"
    project = home / "project"
    project.mkdir(parents=True, exist_ok=True)
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TETHER_") and k != "PYTEST_CURRENT_TEST" and k not in without
    }
    secret = secrets.token_urlsafe(32)
    full_env.update(
        {
            "HOME": str(home),
            "TETHER_AGENT_DIAL_SECRET": secret,
            "TETHER_AGENT_NO_SESSION": "1",
            "TETHER_AGENT_DIRECTORY": str(project),
            "TETHER_WORKSPACE_ID": "ws-test",
        }
    )
    full_env.update(env or {})

    def take_terminal() -> None:  # runs in the child after setsid()
        assert tty_slave is not None
        fcntl.ioctl(tty_slave, termios.TIOCSCTTY, 0)

    stderr_path = tmp_path / "agent.stderr"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tether.agent",
            env=full_env,
            stdin=tty_slave if tty_slave is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=take_terminal if tty_slave is not None else None,
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        info = json.loads(line)
    except BaseException:
        await stop_agent(proc)
        raise AssertionError(f"agent did not start: {stderr_path.read_text()}") from None
    assert secret not in line.decode(), "the agent printed its dial secret"
    return RunningAgent(
        proc, info["address"], full_env["TETHER_AGENT_DIAL_SECRET"], home, project, stderr_path
    )


async def stop_agent(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int | None:
    """Signal the agent's group, wait with a deadline, then kill it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    return proc.returncode


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")
