"""Workspaces, templates, builds and their provisioner jobs (what stores return; never raw rows)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
class LogLine:
    id: int
    created_at: datetime
    level: str
    output: str
    source: str = ""
