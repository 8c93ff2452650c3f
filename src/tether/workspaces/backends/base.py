"""The workspace backend seam: what the provisioner asks of a place that runs workspaces.

A backend knows nothing about the database. The provisioner creates the agent rows (new ids
and tokens for every start build) and hands the backend what it needs to launch them.
Failures raise :class:`tether.errors.BackendError`; its message becomes the job's error.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

LogSink = Callable[[str, str], Awaitable[None]]
"""``await log(level, line)``: append a line to the build job's log (level: info|warn|error)."""


@dataclass(frozen=True)
class AgentLaunch:
    """One agent to start inside the workspace."""

    agent_id: uuid.UUID
    name: str
    token: str  # the agent's session token (the server stores only its hash)
    # what the server dials the agent with (derived from the server key, never stored)
    dial_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class WorkspaceRef:
    workspace_id: uuid.UUID
    owner_name: str
    name: str
    template_name: str
    parameters: dict[str, str] = field(default_factory=dict)
    network: bool = True  # False: the template asked for no network (sandboxed backends)
    # the template's section for this backend (e.g. ``docker:``), as JSON data
    backend_config: dict[str, Any] = field(default_factory=dict)
    build_id: uuid.UUID | None = None  # the build this start/stop/delete runs for


@dataclass(frozen=True)
class WorkspaceRuntime:
    """What the backend reports about a workspace's current processes."""

    running: bool
    agent_pids: dict[uuid.UUID, int] = field(default_factory=dict)
    home: str | None = None


class WorkspaceBackend(Protocol):
    name: str

    async def start(self, ws: WorkspaceRef, agents: list[AgentLaunch], log: LogSink) -> None:
        """Create the workspace if needed and launch its agents; return once launched.

        Any agent process of an earlier build still running is stopped first."""
        ...

    async def stop(self, ws: WorkspaceRef, log: LogSink) -> None:
        """Stop every process the workspace started (agents and their children).
        Idempotent: stopping a stopped workspace succeeds."""
        ...

    async def delete(self, ws: WorkspaceRef, log: LogSink) -> None:
        """Stop the workspace and remove its files. Idempotent."""
        ...

    async def inspect(self, ws: WorkspaceRef) -> WorkspaceRuntime:
        """Report whether the workspace's processes are running."""
        ...


class ReconcilingBackend(WorkspaceBackend, Protocol):
    """A backend whose workspaces live outside the server (containers, volumes, Pods) and
    can be listed from their labels. The provisioner calls :meth:`remove_unknown` at
    start-up (:mod:`tether.workspaces.reconcile`); the docker backend implements it, a
    Kubernetes backend would too (docs/kubernetes.md)."""

    async def remove_unknown(
        self, known: set[uuid.UUID] | Callable[[], Awaitable[set[uuid.UUID]]], log: LogSink
    ) -> list[uuid.UUID]:
        """Delete what belongs to workspaces not in ``known`` (asked after listing)."""
        ...


def decided_dial_address(
    backend: object | None, workspace_id: uuid.UUID, agent_id: uuid.UUID
) -> str | None:
    """The address the backend decided for this agent (``dial_address(workspace_id,
    agent_id)``), or None for a backend that leaves it to the agent (test fakes)."""
    decide = getattr(backend, "dial_address", None)
    if decide is None:
        return None
    address = decide(workspace_id, agent_id)
    return address if isinstance(address, str) else None
