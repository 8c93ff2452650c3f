"""Contract of :class:`WorkspaceBackend`, run against the fake, the local and the docker
backend.

The local and docker backends run ``tests/fixtures/sleepy_agent.py`` as their agent: a process
that double-forks a sleeping daemon and sleeps, so no server is needed. The docker backend
runs it in a container of the workspace image on the test engine (``docker_host`` fixture).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tether.errors import BackendError
from tether.testing.fake_backend import FakeBackend
from tether.workspaces.backends.base import AgentLaunch, WorkspaceBackend, WorkspaceRef
from tether.workspaces.backends.docker import DockerBackend
from tether.workspaces.backends.local import LocalBackend

FIXTURES = Path(__file__).parent.parent / "fixtures"
SLEEPY = FIXTURES / "sleepy_agent.py"


def docker_backend(
    host: str, root: Path, run_root: Path, script: str = "sleepy_agent.py"
) -> DockerBackend:
    """The docker backend running the sleepy agent (``/opt/fixtures`` in the container)."""
    return DockerBackend(
        root,
        "http://127.0.0.1:9",
        docker_host=host,
        agent_args=[f"/opt/fixtures/{script}"],
        extra_binds=[f"{FIXTURES}:/opt/fixtures:ro"],
        stop_grace_s=2.0,
        run_root=run_root,
    )


@dataclass
class Log:
    lines: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, level: str, line: str) -> None:
        assert level in ("info", "warn", "error")
        self.lines.append((level, line))


@dataclass
class Harness:
    backend: WorkspaceBackend
    kind: str
    root: Path
    docker_host: str = ""
    run_root: Path | None = None

    def failing(self) -> WorkspaceBackend:
        """A backend over the same state whose next start fails."""
        if isinstance(self.backend, FakeBackend):
            self.backend.fail_next_start("agent binary missing")
            return self.backend
        if self.kind == "docker":
            assert self.run_root is not None
            return docker_backend(self.docker_host, self.root, self.run_root, "no-such-agent")
        return LocalBackend(
            self.root, "http://127.0.0.1:9", agent_command=[str(self.root / "no-such-agent")]
        )


def new_ws() -> WorkspaceRef:
    return WorkspaceRef(uuid.uuid4(), "alice", "dev", "python", {"repo_name": "demo"})


def launches(*names: str) -> list[AgentLaunch]:
    return [AgentLaunch(uuid.uuid4(), n, f"token-{n}") for n in names]


@pytest.fixture(params=["fake", "local", pytest.param("docker", marks=pytest.mark.docker)])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield Harness(FakeBackend(), "fake", tmp_path)
        return
    if request.param == "docker":
        host = request.getfixturevalue("docker_host")
        run_root = Path(tempfile.mkdtemp(prefix="td", dir="/tmp"))  # short: socket paths
        backend = docker_backend(host, tmp_path / "workspaces", run_root)
        try:
            yield Harness(backend, "docker", tmp_path / "workspaces", host, run_root)
        finally:
            # Never leak containers or volumes, whatever the test did.
            ours = {uuid.UUID(n) for n in await asyncio.to_thread(os.listdir, run_root)}
            for managed in await backend.managed():
                if managed.workspace_id in ours:
                    await backend.delete(WorkspaceRef(managed.workspace_id, "", "", ""), Log())
            shutil.rmtree(run_root, ignore_errors=True)
        return
    root = tmp_path / "workspaces"
    backend = LocalBackend(
        root,
        "http://127.0.0.1:9",
        agent_command=[sys.executable, str(SLEEPY)],
        stop_grace_s=2.0,
    )
    h = Harness(backend, "local", root)
    try:
        yield h
    finally:
        # Never leak processes, whatever the test did.
        for child in root.iterdir() if root.exists() else []:
            await backend.stop(WorkspaceRef(uuid.UUID(child.name), "", "", ""), Log())


async def test_start_then_inspect_reports_running(harness: Harness) -> None:
    ws, agents, log = new_ws(), launches("main"), Log()
    await harness.backend.start(ws, agents, log)
    runtime = await harness.backend.inspect(ws)
    assert runtime.running
    assert set(runtime.agent_pids) == {agents[0].agent_id}
    assert runtime.home is not None
    assert log.lines


async def test_inspect_unknown_workspace_is_not_running(harness: Harness) -> None:
    runtime = await harness.backend.inspect(new_ws())
    assert not runtime.running
    assert runtime.agent_pids == {}


async def test_stop_is_idempotent(harness: Harness) -> None:
    ws = new_ws()
    await harness.backend.start(ws, launches("main"), Log())
    await harness.backend.stop(ws, Log())
    assert not (await harness.backend.inspect(ws)).running
    await harness.backend.stop(ws, Log())  # already stopped
    await harness.backend.stop(new_ws(), Log())  # never started
    assert not (await harness.backend.inspect(ws)).running


async def test_start_again_after_stop(harness: Harness) -> None:
    ws = new_ws()
    await harness.backend.start(ws, launches("main"), Log())
    await harness.backend.stop(ws, Log())
    second = launches("main")
    await harness.backend.start(ws, second, Log())
    runtime = await harness.backend.inspect(ws)
    assert runtime.running
    assert set(runtime.agent_pids) == {second[0].agent_id}


async def test_restart_without_stop_replaces_the_old_agents(harness: Harness) -> None:
    ws = new_ws()
    first = launches("main", "helper")
    await harness.backend.start(ws, first, Log())
    second = launches("main", "helper")
    await harness.backend.start(ws, second, Log())
    runtime = await harness.backend.inspect(ws)
    assert set(runtime.agent_pids) == {a.agent_id for a in second}


async def test_delete_removes_the_workspace(harness: Harness) -> None:
    ws = new_ws()
    await harness.backend.start(ws, launches("main"), Log())
    await harness.backend.delete(ws, Log())
    runtime = await harness.backend.inspect(ws)
    assert not runtime.running
    assert runtime.home is None
    await harness.backend.delete(ws, Log())  # idempotent
    await harness.backend.delete(new_ws(), Log())  # never existed


async def test_failing_start_raises_backend_error(harness: Harness) -> None:
    ws, log = new_ws(), Log()
    backend = harness.failing()
    with pytest.raises(BackendError) as info:
        await backend.start(ws, launches("main"), log)
    assert info.value.message
    assert not (await backend.inspect(ws)).running
    assert any(level == "error" for level, _ in log.lines)


async def test_failing_start_leaves_no_earlier_agents_running(harness: Harness) -> None:
    ws = new_ws()
    await harness.backend.start(ws, launches("main"), Log())
    backend = harness.failing()
    with pytest.raises(BackendError):
        await backend.start(ws, launches("main"), Log())
    assert not (await harness.backend.inspect(ws)).running
