"""Attacks from inside a sandboxed local workspace (issue #8 §2/§3), each asserted to fail.

Workspace A runs the real ``tether agent`` (holding its token and dial secret) with a secret
file in its home; workspace B runs ``tests/fixtures/sandbox_attack.py`` as its agent and tries
to read the server's database, data dir and logs, A's files, A's token anywhere in ``/proc``,
to kill A's agent, to connect to A's socket and to write system directories.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tether.agentconn import AgentClient
from tether.errors import BackendError
from tether.workspaces.backends.base import AgentLaunch, WorkspaceRef
from tether.workspaces.backends.local import LocalBackend
from tether.workspaces.backends.procs import start_ticks
from tether.workspaces.backends.sandbox import Sandbox

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ATTACK = FIXTURES / "sandbox_attack.py"
SERVER = "http://127.0.0.1:9"
TIMEOUT_S = 15.0


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def __call__(self, level: str, line: str) -> None:
        self.lines.append((level, line))


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_file(path: Path) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if text := _text(path):
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not appear")


async def agent_info(logfile: Path) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        text = _text(logfile)
        for line in text.splitlines():
            if line.startswith("{") and '"address"' in line:
                data: dict[str, Any] = json.loads(line)
                return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"agent did not start:\n{text}")


class Victim:
    def __init__(self, backend: LocalBackend, ws: WorkspaceRef, agent: AgentLaunch) -> None:
        self.backend, self.ws, self.agent = backend, ws, agent


@pytest.fixture
async def victim(tmp_path: Path) -> AsyncIterator[Victim]:
    """Workspace A: a real agent with a token, a dial secret and a secret file at home."""
    backend = LocalBackend(
        tmp_path / "data" / "workspaces",
        SERVER,
        extra_env={"TETHER_AGENT_NO_SESSION": "1"},
        stop_grace_s=2.0,
    )
    ws = WorkspaceRef(uuid.uuid4(), "alice", "a", "python")
    agent = AgentLaunch(
        uuid.uuid4(), "main", f"tok-A-{uuid.uuid4().hex}", dial_secret=f"dial-A-{uuid.uuid4().hex}"
    )
    await backend.start(ws, [agent], Log())
    try:
        (backend.home(ws.workspace_id) / "secret.txt").write_text("alice's secret")
        yield Victim(backend, ws, agent)
    finally:
        await backend.stop(ws, Log())


async def test_attacks_from_another_workspace_fail(tmp_path: Path, victim: Victim) -> None:
    data = tmp_path / "data"
    (data / "tether.db").write_text("THE SERVER DATABASE")
    (data / "server.log").write_text("server log")
    a_ws, a_agent = victim.ws.workspace_id, victim.agent
    a_dir = victim.backend.workspace_dir(a_ws)
    a_info = await agent_info(a_dir / "agent-main.log")
    a_pid = (await victim.backend.inspect(victim.ws)).agent_pids[a_agent.agent_id]
    a_socket = victim.backend.dial_address(a_ws, a_agent.agent_id).removeprefix("unix:")
    targets = {
        "read": [
            str(data / "tether.db"),
            str(data / "server.log"),
            str(victim.backend.home(a_ws) / "secret.txt"),
            str(a_dir / "agent-main.log"),
            str(a_dir / "agents" / f"{a_agent.agent_id}.pid"),
            "/etc/shadow",
            f"/proc/{a_pid}/environ",
        ],
        "list": [str(data), str(data / "workspaces"), str(victim.backend.run_root)],
        "kill": [a_pid],
        "connect": [a_socket],
        "write": ["/usr/pwned", "/etc/pwned", str(victim.backend.home(a_ws) / "pwned")],
        "needle": a_agent.token,
    }
    targets_file = tmp_path / "targets.json"
    targets_file.write_text(json.dumps(targets))
    attacker = LocalBackend(
        data / "workspaces",
        SERVER,
        agent_command=[sys.executable, str(ATTACK), str(targets_file)],
        stop_grace_s=1.0,
    )
    b_ws = WorkspaceRef(uuid.uuid4(), "mallory", "b", "python")
    await attacker.start(b_ws, [AgentLaunch(uuid.uuid4(), "main", "tok-B")], Log())
    try:
        report = json.loads(await wait_file(attacker.home(b_ws.workspace_id) / "attack.json"))
    finally:
        await attacker.stop(b_ws, Log())

    for kind in ("read", "kill", "connect", "write"):
        for target, outcome in report[kind].items():
            assert outcome.startswith("failed"), (kind, target, outcome)
    for target, outcome in report["list"].items():
        # Parent directories of B's own home exist (empty); nothing of the server or of A.
        assert str(a_ws) not in outcome and "tether.db" not in outcome, (target, outcome)
        assert "server.log" not in outcome, (target, outcome)
    assert report["proc"]["needle_found_in"] == []
    assert a_pid not in report["proc"]["visible_pids"]
    assert len(report["proc"]["visible_pids"]) <= 3  # init, the attacker, its children
    if os.geteuid() == 0:
        assert report["uid"] not in (0, None)
    # A is untouched and still answers.
    assert start_ticks(a_pid) is not None
    assert (victim.backend.home(a_ws) / "secret.txt").read_text() == "alice's secret"
    async with AgentClient(
        a_info["address"], a_agent.dial_secret, connect_timeout=2.0, request_timeout=10.0
    ) as client:
        assert (await client.exec("echo alive", timeout_s=10)).output.strip() == "alive"


async def test_a_workspace_command_cannot_read_its_own_agents_token(victim: Victim) -> None:
    a_dir = victim.backend.workspace_dir(victim.ws.workspace_id)
    info = await agent_info(a_dir / "agent-main.log")
    pid = (await victim.backend.inspect(victim.ws)).agent_pids[victim.agent.agent_id]
    # Not in the agent's environment, seen from the host either.
    environ = _read(f"/proc/{pid}/environ")
    assert b"TETHER_AGENT_ID=" in environ  # really read it
    assert victim.agent.token.encode() not in environ
    async with AgentClient(
        info["address"], victim.agent.dial_secret, connect_timeout=2.0, request_timeout=10.0
    ) as client:
        # The agent is non-dumpable: its own commands cannot read its environment, memory
        # or fds (where the token and secret live), nor inherit the token pipe.
        result = await client.exec(
            "cat /proc/$PPID/environ; ls /proc/$PPID/fd; ls /proc/self/fd; env", timeout_s=10
        )
    assert "Permission denied" in result.output
    assert victim.agent.token not in result.output
    assert victim.agent.dial_secret not in result.output
    assert "TETHER_AGENT_TOKEN" not in result.output


async def test_stop_kills_a_daemon_that_dropped_the_workspace_marker(victim: Victim) -> None:
    """The PID namespace makes stop exact: a process that cleared its environment (so the
    /proc marker scan cannot find it) and left the session still dies with the sandbox."""
    a_dir = victim.backend.workspace_dir(victim.ws.workspace_id)
    info = await agent_info(a_dir / "agent-main.log")
    async with AgentClient(
        info["address"], victim.agent.dial_secret, connect_timeout=2.0, request_timeout=10.0
    ) as client:
        # Wait until the daemon runs before returning: the agent kills the command's
        # process group when the command ends.
        result = await client.exec(
            "env -i setsid sh -c 'echo $$ > /tmp/hidden; exec sleep 300' </dev/null >/dev/null"
            " 2>&1 & while [ ! -s /tmp/hidden ]; do sleep 0.01; done; echo started",
            timeout_s=10,
        )
    assert "started" in result.output
    agent_pid = (await victim.backend.inspect(victim.ws)).agent_pids[victim.agent.agent_id]
    ns = os.readlink(f"/proc/{agent_pid}/ns/pid")
    deadline = time.monotonic() + TIMEOUT_S
    while True:  # the background command may still be exec'ing
        hidden = [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit()
            and _readlink(f"/proc/{p}/ns/pid") == ns
            and _read(f"/proc/{p}/cmdline").startswith(b"sleep\x00300\x00")
        ]
        if hidden or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert len(hidden) == 1, result.output
    assert b"TETHER_WORKSPACE_ID" not in _read(f"/proc/{hidden[0]}/environ")
    await victim.backend.stop(victim.ws, Log())
    assert start_ticks(hidden[0]) is None
    assert start_ticks(agent_pid) is None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


async def test_without_a_working_sandbox_the_backend_refuses_and_says_how_to_fix(
    tmp_path: Path,
) -> None:
    backend = LocalBackend(
        tmp_path / "ws", SERVER, sandbox=Sandbox(bwrap=str(tmp_path / "no-bwrap"))
    )
    log = Log()
    ws = WorkspaceRef(uuid.uuid4(), "alice", "a", "python")
    with pytest.raises(BackendError) as caught:
        await backend.start(ws, [AgentLaunch(uuid.uuid4(), "main", "t")], log)
    message = caught.value.message
    assert "bwrap not found" in message
    assert "make sysdeps" in message and "--unsandboxed" in message
    assert not (await backend.inspect(ws)).running
