"""The local backend running the real ``python -m tether.agent`` (standalone, no server).

A command the agent runs double-forks a daemon out of the agent's process group and
session; stopping the workspace must still kill it (it inherits ``TETHER_WORKSPACE_ID``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tether.agentconn import AgentClient
from tether.workspaces.backends.base import AgentLaunch, WorkspaceRef
from tether.workspaces.backends.local import LocalBackend
from tether.workspaces.backends.procs import host_pid, start_ticks

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 15.0


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def __call__(self, level: str, line: str) -> None:
        self.lines.append((level, line))


def _read_log(logfile: Path) -> str:
    return logfile.read_text(errors="replace") if logfile.exists() else ""


async def address_line(logfile: Path) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in _read_log(logfile).splitlines():
            if line.startswith("{") and '"address"' in line:
                data: dict[str, Any] = json.loads(line)
                return data
        await asyncio.sleep(0.05)
    raise AssertionError(f"agent did not print its address:\n{_read_log(logfile)}")


async def test_real_agent_is_started_and_stopped_with_its_escaped_children(
    tmp_path: Path,
) -> None:
    backend = LocalBackend(
        tmp_path / "ws",
        "http://127.0.0.1:9",
        stop_grace_s=5.0,
        extra_env={"TETHER_AGENT_NO_SESSION": "1"},
    )
    ws = WorkspaceRef(uuid.uuid4(), "alice", "dev", "python")
    agent = AgentLaunch(uuid.uuid4(), "main", "token", dial_secret="dial-" + "s3cret" * 6)
    log = Log()
    await backend.start(ws, [agent], log)
    try:
        logfile = backend.workspace_dir(ws.workspace_id) / "agent-main.log"
        info = await address_line(logfile)
        assert logfile.stat().st_mode & 0o777 == 0o600
        assert agent.dial_secret not in _read_log(logfile)
        assert all(agent.dial_secret not in line for _, line in log.lines)
        async with AgentClient(
            info["address"], agent.dial_secret, connect_timeout=2.0, request_timeout=10.0
        ) as client:
            result = await client.exec(
                "setsid sh -c 'sleep 60 & echo $!' </dev/null; echo $HOME",
                timeout_s=10,
            )
        assert result.exit_code == 0, result.output
        inner_pid, home = result.output.split()
        assert home == str(backend.home(ws.workspace_id))
        agent_pid = (await backend.inspect(ws)).agent_pids[agent.agent_id]
        daemon_pid = host_pid(agent_pid, int(inner_pid))  # the command saw its sandbox's pid
        assert daemon_pid is not None
        assert start_ticks(daemon_pid) is not None
        assert (await backend.inspect(ws)).running
    finally:
        await backend.stop(ws, log)
    assert not (await backend.inspect(ws)).running
    assert start_ticks(daemon_pid) is None
