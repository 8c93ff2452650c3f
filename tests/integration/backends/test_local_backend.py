"""The local backend with real processes (``tests/fixtures/sleepy_agent.py`` as the agent),
sandboxed (the default) and ``unsandboxed``. The fixture reports pids as seen inside its
sandbox; :func:`host_pids` maps them to host pids."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tether.errors import BackendError, InvalidInput
from tether.workspaces.backends import backend_for
from tether.workspaces.backends.base import AgentLaunch, WorkspaceRef
from tether.workspaces.backends.local import LocalBackend
from tether.workspaces.backends.procs import host_pid, start_ticks

pytestmark = pytest.mark.integration

SLEEPY = [sys.executable, str(Path(__file__).parents[2] / "fixtures" / "sleepy_agent.py")]
SERVER = "http://127.0.0.1:9"


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def __call__(self, level: str, line: str) -> None:
        self.lines.append((level, line))

    def text(self, level: str) -> str:
        return "\n".join(line for lv, line in self.lines if lv == level)


def running(pid: int) -> bool:
    """Alive and not a zombie (a reaped-by-nobody zombie counts as gone)."""
    return start_ticks(pid) is not None


def stat_field(pid: int, index: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rfind(b")") + 2 :].split()[index])


async def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def report(backend: LocalBackend, ws: WorkspaceRef, agent: AgentLaunch) -> dict[str, Any]:
    """The fixture's report, with ``pid`` and ``grandchild`` turned into host pids."""
    path = backend.home(ws.workspace_id) / f"sleepy-{agent.agent_id}.json"
    await wait_for(path.exists)
    data: dict[str, Any] = json.loads(path.read_text())
    agent_pid = (await backend.inspect(ws)).agent_pids[agent.agent_id]
    assert host_pid(agent_pid, data["pid"]) == agent_pid  # the backend records the host pid
    grandchild = host_pid(agent_pid, data["grandchild"])
    assert grandchild is not None
    data["inner_pid"], data["pid"], data["grandchild"] = data["pid"], agent_pid, grandchild
    return data


def new_ws(**params: str) -> WorkspaceRef:
    return WorkspaceRef(uuid.uuid4(), "alice", "dev", "python", dict(params))


def launch(name: str = "main") -> AgentLaunch:
    return AgentLaunch(uuid.uuid4(), name, f"tok-{uuid.uuid4().hex}")


@pytest.fixture(params=["sandboxed", "unsandboxed"])
async def make_backend(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., LocalBackend]]:
    root = tmp_path / "ws"
    made: list[LocalBackend] = []

    def make(**kwargs: Any) -> LocalBackend:
        kwargs.setdefault("agent_command", SLEEPY)
        kwargs.setdefault("unsandboxed", request.param == "unsandboxed")
        kwargs.setdefault("stop_grace_s", 2.0)
        backend = LocalBackend(root, SERVER, **kwargs)
        made.append(backend)
        return backend

    yield make
    # Never leak processes: a fresh backend stops whatever is left.
    if root.exists():
        cleaner = LocalBackend(root, SERVER, stop_grace_s=0.2)
        for child in root.iterdir():
            await cleaner.stop(WorkspaceRef(uuid.UUID(child.name), "", "", ""), Log())


async def test_stop_kills_the_double_forked_grandchild_in_its_own_session(make_backend) -> None:
    backend = make_backend()
    ws, agent, log = new_ws(), launch(), Log()
    await backend.start(ws, [agent], log)
    info = await report(backend, ws, agent)
    pid, grandchild = info["pid"], info["grandchild"]
    assert running(grandchild)
    # It really escaped: another session, not the agent's child.
    assert stat_field(grandchild, 3) != stat_field(pid, 3)  # session id
    assert stat_field(grandchild, 1) != pid  # parent pid
    await backend.stop(ws, log)
    assert not running(pid)
    assert not running(grandchild)
    assert "SIGTERM" in log.text("info")
    assert not (await backend.inspect(ws)).running


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace(make_backend) -> None:
    backend = make_backend(stop_grace_s=0.3, extra_env={"SLEEPY_IGNORE_TERM": "1"})
    ws, agent, log = new_ws(), launch(), Log()
    await backend.start(ws, [agent], log)
    info = await report(backend, ws, agent)
    started = time.monotonic()
    await backend.stop(ws, log)
    elapsed = time.monotonic() - started
    assert not running(info["pid"])
    assert not running(info["grandchild"])
    assert 0.3 <= elapsed < 3.0
    warned = log.text("warn")
    assert "still running after SIGTERM" in warned or "killing the workspace sandbox" in warned


async def test_agent_environment_home_and_log(make_backend, monkeypatch) -> None:
    monkeypatch.setenv("TETHER_SERVER_ONLY_SECRET", "do-not-leak")
    backend = make_backend(extra_env={"TETHER_AGENT_RECONNECT_MAX_S": "1"})
    ws, agent = new_ws(repo_name="demo"), launch()
    await backend.start(ws, [agent], Log())
    info = await report(backend, ws, agent)
    env = info["env"]
    home = str(backend.home(ws.workspace_id))
    assert env["HOME"] == home
    assert info["cwd"] == home
    assert env["TETHER_AGENT_URL"] == SERVER
    # The token arrives on a pipe, never in the environment (children would inherit it).
    assert "TETHER_AGENT_TOKEN" not in env
    assert info["token"] == agent.token
    assert env["TETHER_AGENT_LISTEN"] == backend.dial_address(ws.workspace_id, agent.agent_id)
    assert env["TETHER_WORKSPACE_ID"] == str(ws.workspace_id)
    assert env["TETHER_AGENT_ID"] == str(agent.agent_id)
    assert env["TETHER_WORKSPACE_NAME"] == "dev"
    assert env["TETHER_WORKSPACE_OWNER"] == "alice"
    assert env["TETHER_PARAM_REPO_NAME"] == "demo"
    assert env["TETHER_AGENT_RECONNECT_MAX_S"] == "1"
    assert "TETHER_SERVER_ONLY_SECRET" not in env
    assert env["USER"] == "alice"
    if backend.sandbox is not None and os.geteuid() == 0:
        assert info["uid"] == backend.sandbox.host_uid != 0
    logfile = backend.workspace_dir(ws.workspace_id) / "agent-main.log"
    await wait_for(lambda: "sleepy agent up" in logfile.read_text())
    await backend.stop(ws, Log())


async def test_a_new_backend_instance_stops_processes_of_the_previous_one(make_backend) -> None:
    first = make_backend()
    ws, agents = new_ws(), [launch("main"), launch("second")]
    await first.start(ws, agents, Log())
    infos = [await report(first, ws, a) for a in agents]
    restarted = make_backend()  # e.g. the server restarted
    runtime = await restarted.inspect(ws)
    assert runtime.running
    assert runtime.agent_pids == {a.agent_id: i["pid"] for a, i in zip(agents, infos, strict=True)}
    await restarted.stop(ws, Log())
    for info in infos:
        assert not running(info["pid"])
        assert not running(info["grandchild"])


async def test_an_exited_agent_is_reaped_and_reported_not_running(make_backend) -> None:
    backend = make_backend()
    ws, agent = new_ws(), launch()
    await backend.start(ws, [agent], Log())
    info = await report(backend, ws, agent)
    os.kill(info["pid"], signal.SIGKILL)
    # Gone from /proc entirely: no zombie left behind.
    await wait_for(lambda: not Path(f"/proc/{info['pid']}").exists())
    assert not (await backend.inspect(ws)).running
    await backend.stop(ws, Log())  # still stops the orphaned grandchild
    assert not running(info["grandchild"])


async def test_a_reused_pid_in_a_pid_file_is_never_signalled(make_backend) -> None:
    backend = make_backend()
    ws, agent = new_ws(), launch()
    await backend.start(ws, [agent], Log())
    await backend.stop(ws, Log())
    stranger = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
    try:
        # A stale pid file whose pid now belongs to an unrelated process.
        pidfile = backend.workspace_dir(ws.workspace_id) / "agents" / f"{agent.agent_id}.pid"
        ticks = start_ticks(stranger.pid)
        assert ticks is not None
        record = {"pid": stranger.pid, "start_ticks": ticks - 1, "name": "main"}
        pidfile.write_text(json.dumps(record))
        assert not (await backend.inspect(ws)).running
        await backend.stop(ws, Log())
        assert stranger.returncode is None
        assert running(stranger.pid)
    finally:
        stranger.kill()
        await asyncio.wait_for(stranger.wait(), 5)


async def test_missing_agent_command_is_a_backend_error(make_backend) -> None:
    backend = make_backend(agent_command=["/nonexistent/tether-agent"])
    log = Log()
    with pytest.raises(BackendError, match="command not found: /nonexistent/tether-agent"):
        await backend.start(new_ws(), [launch()], log)
    assert "command not found" in log.text("error")


async def test_delete_removes_the_directory(make_backend) -> None:
    backend = make_backend()
    ws, agent = new_ws(), launch()
    await backend.start(ws, [agent], Log())
    info = await report(backend, ws, agent)
    await backend.delete(ws, Log())
    assert not backend.workspace_dir(ws.workspace_id).exists()
    assert not running(info["grandchild"])


def test_backend_for(tmp_path: Path) -> None:
    backend = backend_for("local", root=tmp_path, server_url=SERVER, stop_grace_s=1.0)
    assert isinstance(backend, LocalBackend)
    assert backend.stop_grace_s == 1.0
    with pytest.raises(InvalidInput) as info:
        backend_for("podman", root=tmp_path, server_url=SERVER)
    assert info.value.field == "backend"
