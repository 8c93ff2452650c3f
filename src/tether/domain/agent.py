"""Workspace agents: the agent row, its lifecycle state machine and its connection status."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime


class Lifecycle(enum.StrEnum):
    CREATED = "created"
    STARTING = "starting"
    READY = "ready"
    START_ERROR = "start_error"
    START_TIMEOUT = "start_timeout"
    SHUTTING_DOWN = "shutting_down"
    SHUTDOWN_TIMEOUT = "shutdown_timeout"
    SHUTDOWN_ERROR = "shutdown_error"
    OFF = "off"


# Lifecycle state machine: which states may follow which. ``off`` is reachable from any
# state because the backend records it when it stops the processes itself.
LIFECYCLE_TRANSITIONS: dict[Lifecycle, frozenset[Lifecycle]] = {
    Lifecycle.CREATED: frozenset({Lifecycle.STARTING, Lifecycle.READY, Lifecycle.SHUTTING_DOWN}),
    Lifecycle.STARTING: frozenset(
        {Lifecycle.READY, Lifecycle.START_ERROR, Lifecycle.START_TIMEOUT, Lifecycle.SHUTTING_DOWN}
    ),
    Lifecycle.READY: frozenset({Lifecycle.SHUTTING_DOWN}),
    Lifecycle.START_ERROR: frozenset({Lifecycle.SHUTTING_DOWN}),
    Lifecycle.START_TIMEOUT: frozenset({Lifecycle.SHUTTING_DOWN, Lifecycle.READY}),
    Lifecycle.SHUTTING_DOWN: frozenset({Lifecycle.SHUTDOWN_TIMEOUT, Lifecycle.SHUTDOWN_ERROR}),
    Lifecycle.SHUTDOWN_TIMEOUT: frozenset(),
    Lifecycle.SHUTDOWN_ERROR: frozenset(),
    Lifecycle.OFF: frozenset(),
}
for _state in Lifecycle:
    if _state is not Lifecycle.OFF:
        LIFECYCLE_TRANSITIONS[_state] = LIFECYCLE_TRANSITIONS[_state] | {Lifecycle.OFF}


def lifecycle_sources(target: Lifecycle) -> frozenset[Lifecycle]:
    """States from which ``target`` may be entered (used in compare-and-set updates)."""
    return frozenset(s for s, nxt in LIFECYCLE_TRANSITIONS.items() if target in nxt)


@dataclass(frozen=True)
class WorkspaceAgent:
    id: uuid.UUID
    build_id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    display_order: int
    chat: bool
    parent_id: uuid.UUID | None
    created_at: datetime
    first_connected_at: datetime | None
    last_connected_at: datetime | None
    disconnected_at: datetime | None
    connection_timeout_s: int
    lifecycle_state: Lifecycle
    lifecycle_changed_at: datetime
    dial_address: str | None = None
    dial_secret: str | None = field(default=None, repr=False)
    os: str | None = None
    directory: str | None = None
    version: str | None = None


class AgentStatus(enum.StrEnum):
    """Computed from the row's timestamps, never stored (``workspaces/status.py``)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"
