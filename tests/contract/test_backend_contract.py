"""Contract of :class:`WorkspaceBackend`, run against the fake and the local backend.

The local backend runs ``tests/fixtures/sleepy_agent.py`` as its agent: a process that
double-forks a sleeping daemon and sleeps, so no server is needed.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tether.errors import BackendError
from tether.testing.fake_backend import FakeBackend
from tether.workspaces.backends.base import AgentLaunch, WorkspaceBackend, WorkspaceRef
from tether.workspaces.backends.local import LocalBackend

SLEEPY = Path(__file__).parent.parent / "fixtures" / "sleepy_agent.py"


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

    def failing(self) -> WorkspaceBackend:
        """A backend over the same state whose next start fails."""
        if isinstance(self.backend, FakeBackend):
            self.backend.fail_next_start("agent binary missing")
            return self.backend
        return LocalBackend(
            self.root, "http://127.0.0.1:9", agent_command=[str(self.root / "no-such-agent")]
        )


def new_ws() -> WorkspaceRef:
    return WorkspaceRef(uuid.uuid4(), "alice", "dev", "python", {"repo_name": "demo"})


def launches(*names: str) -> list[AgentLaunch]:
    return [AgentLaunch(uuid.uuid4(), n, f"token-{n}") for n in names]


@pytest.fixture(params=["fake", "local"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield Harness(FakeBackend(), "fake", tmp_path)
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
