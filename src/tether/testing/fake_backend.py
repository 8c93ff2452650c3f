"""An in-memory workspace backend for tests: records what it was asked, runs no processes.

``on_start(ws, agents)`` lets a test bring up fake agents when a build starts;
``on_stop(ws)`` lets it take them down. ``fail_next_start(message)`` makes the next start raise
:class:`~tether.errors.BackendError`, as a real backend does when an agent cannot launch.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tether.errors import BackendError
from tether.workspaces.backends.base import AgentLaunch, LogSink, WorkspaceRef, WorkspaceRuntime

StartHook = Callable[[WorkspaceRef, list[AgentLaunch]], Awaitable[None]]
StopHook = Callable[[WorkspaceRef], Awaitable[None]]


@dataclass
class BackendCall:
    """One call the backend received (``op``: start | stop | delete)."""

    op: str
    workspace_id: uuid.UUID
    agents: list[AgentLaunch] = field(default_factory=list)


@dataclass
class FakeWorkspace:
    ref: WorkspaceRef
    agents: list[AgentLaunch] = field(default_factory=list)
    running: bool = False


class FakeBackend:
    """Implements :class:`~tether.workspaces.backends.base.WorkspaceBackend` in memory."""

    def __init__(
        self,
        name: str = "fake",
        *,
        on_start: StartHook | None = None,
        on_stop: StopHook | None = None,
    ) -> None:
        self.name = name
        self.on_start = on_start
        self.on_stop = on_stop
        self.calls: list[BackendCall] = []
        self.workspaces: dict[uuid.UUID, FakeWorkspace] = {}
        self._fail_next: str | None = None

    def fail_next_start(self, message: str = "the fake backend was told to fail") -> None:
        """Make the next :meth:`start` raise BackendError with ``message``."""
        self._fail_next = message

    def started_agents(self, workspace_id: uuid.UUID) -> list[AgentLaunch]:
        """The agents of the workspace's latest start (empty if never started)."""
        ws = self.workspaces.get(workspace_id)
        return list(ws.agents) if ws else []

    def ops(self, workspace_id: uuid.UUID | None = None) -> list[str]:
        """The operations received, in order (optionally for one workspace)."""
        return [c.op for c in self.calls if workspace_id in (None, c.workspace_id)]

    async def start(self, ws: WorkspaceRef, agents: list[AgentLaunch], log: LogSink) -> None:
        self.calls.append(BackendCall("start", ws.workspace_id, list(agents)))
        state = self.workspaces.get(ws.workspace_id)
        if state is not None and state.running:
            await self._halt(state, log)
        if self._fail_next is not None:
            message, self._fail_next = self._fail_next, None
            await log("error", message)
            raise BackendError(message)
        state = FakeWorkspace(ref=ws, agents=list(agents), running=True)
        self.workspaces[ws.workspace_id] = state
        for agent in agents:
            await log("info", f"started agent {agent.name} (fake)")
        if self.on_start is not None:
            await self.on_start(ws, list(agents))

    async def stop(self, ws: WorkspaceRef, log: LogSink) -> None:
        self.calls.append(BackendCall("stop", ws.workspace_id))
        state = self.workspaces.get(ws.workspace_id)
        if state is None or not state.running:
            await log("info", "no workspace processes running")
            return
        await self._halt(state, log)

    async def delete(self, ws: WorkspaceRef, log: LogSink) -> None:
        self.calls.append(BackendCall("delete", ws.workspace_id))
        state = self.workspaces.pop(ws.workspace_id, None)
        if state is not None and state.running:
            await self._halt(state, log)
        await log("info", "workspace removed (fake)")

    async def inspect(self, ws: WorkspaceRef) -> WorkspaceRuntime:
        state = self.workspaces.get(ws.workspace_id)
        if state is None:
            return WorkspaceRuntime(running=False)
        pids = {a.agent_id: self._pid(a.agent_id) for a in state.agents} if state.running else {}
        return WorkspaceRuntime(
            running=state.running, agent_pids=pids, home=f"/fake/{ws.workspace_id}/home"
        )

    async def _halt(self, state: FakeWorkspace, log: LogSink) -> None:
        state.running = False
        await log("info", "workspace processes stopped (fake)")
        if self.on_stop is not None:
            await self.on_stop(state.ref)

    def _pid(self, agent_id: uuid.UUID) -> int:
        # Stable, made-up pid per agent; real ones are never needed by callers of a fake.
        return 1000 + agent_id.int % 100_000
