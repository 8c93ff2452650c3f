"""Domain types of the workspace system (what stores return; never raw rows)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class Transition(enum.StrEnum):
    START = "start"
    STOP = "stop"
    DELETE = "delete"


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"

    @property
    def in_progress(self) -> bool:
        return self in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.CANCELING)


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
class User:
    id: uuid.UUID
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None = None  # a disabled user's tokens get 401

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True)
class Template:
    id: uuid.UUID
    name: str
    display_name: str
    description: str
    backend: str
    deprecated: bool
    active_version_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TemplateVersion:
    id: uuid.UUID
    template_id: uuid.UUID
    version: int
    spec: dict[str, Any]
    source: str
    created_at: datetime


@dataclass(frozen=True)
class Workspace:
    id: uuid.UUID
    owner_id: uuid.UUID
    template_id: uuid.UUID
    name: str
    ttl_ms: int | None
    last_used_at: datetime
    deleted: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    canceled_at: datetime | None
    error: str | None
    worker_id: uuid.UUID | None

    @property
    def status(self) -> JobStatus:
        return derive_job_status(self.completed_at, self.canceled_at, self.started_at, self.error)


def derive_job_status(
    completed_at: datetime | None,
    canceled_at: datetime | None,
    started_at: datetime | None,
    error: str | None,
) -> JobStatus:
    """docs/architecture.md §4: the job status is derived, never stored. The error check precedes
    the cancel check in both branches."""
    if completed_at is not None:
        if error:
            return JobStatus.FAILED
        if canceled_at is not None:
            return JobStatus.CANCELED
        return JobStatus.SUCCEEDED
    if error:
        return JobStatus.FAILED
    if canceled_at is not None:
        return JobStatus.CANCELING
    if started_at is None:
        return JobStatus.PENDING
    return JobStatus.RUNNING


@dataclass(frozen=True)
class Build:
    id: uuid.UUID
    workspace_id: uuid.UUID
    build_number: int
    transition: Transition
    template_version_id: uuid.UUID
    parameters: dict[str, str]
    job_id: uuid.UUID
    initiator_id: uuid.UUID
    reason: str
    created_at: datetime
    job: Job

    @property
    def status(self) -> JobStatus:
        return self.job.status


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


@dataclass(frozen=True)
class LogLine:
    id: int
    created_at: datetime
    level: str
    output: str
    source: str = ""
