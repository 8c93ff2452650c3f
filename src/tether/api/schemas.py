"""Public JSON shapes of the API (also what the SDK and CLI read)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tether.domain.user import User
from tether.domain.workspace import Build, Template, TemplateVersion
from tether.workspaces.service import AgentView, WorkspaceView


class UserOut(BaseModel):
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime
    disabled: bool = False
    disabled_at: datetime | None = None

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(
            id=u.id,
            name=u.name,
            role=str(u.role),
            created_at=u.created_at,
            disabled=u.disabled,
            disabled_at=u.disabled_at,
        )


class TemplateOut(BaseModel):
    id: uuid.UUID
    name: str
    display_name: str
    description: str
    backend: str
    deprecated: bool
    active_version_id: uuid.UUID | None
    active_version: int | None = None
    spec: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, t: Template, version: TemplateVersion | None = None) -> TemplateOut:
        return cls(
            id=t.id,
            name=t.name,
            display_name=t.display_name,
            description=t.description,
            backend=t.backend,
            deprecated=t.deprecated,
            active_version_id=t.active_version_id,
            active_version=version.version if version else None,
            spec=version.spec if version else None,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )


class BuildOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    build_number: int
    transition: str
    status: str
    job_id: uuid.UUID
    error: str | None
    reason: str
    parameters: dict[str, str]
    template_version_id: uuid.UUID
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, b: Build) -> BuildOut:
        return cls(
            id=b.id,
            workspace_id=b.workspace_id,
            build_number=b.build_number,
            transition=b.transition.value,
            status=b.status.value,
            job_id=b.job_id,
            error=b.job.error,
            reason=b.reason,
            parameters=b.parameters,
            template_version_id=b.template_version_id,
            created_at=b.created_at,
            started_at=b.job.started_at,
            completed_at=b.job.completed_at,
        )


class AgentOut(BaseModel):
    id: uuid.UUID
    build_id: uuid.UUID
    name: str
    status: str
    lifecycle_state: str
    chat: bool
    display_order: int
    first_connected_at: datetime | None
    last_connected_at: datetime | None
    disconnected_at: datetime | None
    os: str | None
    directory: str | None
    version: str | None

    @classmethod
    def of(cls, v: AgentView) -> AgentOut:
        a = v.agent
        return cls(
            id=a.id,
            build_id=a.build_id,
            name=a.name,
            status=v.status.value,
            lifecycle_state=a.lifecycle_state.value,
            chat=a.chat,
            display_order=a.display_order,
            first_connected_at=a.first_connected_at,
            last_connected_at=a.last_connected_at,
            disconnected_at=a.disconnected_at,
            os=a.os,
            directory=a.directory,
            version=a.version,
        )


class WorkspaceOut(BaseModel):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    template_id: uuid.UUID
    template_name: str
    state: str
    ttl_ms: int | None
    last_used_at: datetime
    deadline: datetime | None
    latest_build: BuildOut | None
    agents: list[AgentOut] = Field(default_factory=list)
    created_at: datetime

    @classmethod
    def of(cls, v: WorkspaceView) -> WorkspaceOut:
        ws = v.workspace
        return cls(
            id=ws.id,
            name=ws.name,
            owner_id=ws.owner_id,
            template_id=ws.template_id,
            template_name=v.template.name,
            state=v.state,
            ttl_ms=ws.ttl_ms,
            last_used_at=ws.last_used_at,
            deadline=v.deadline,
            latest_build=BuildOut.of(v.latest_build) if v.latest_build else None,
            agents=[AgentOut.of(a) for a in v.agents],
            created_at=ws.created_at,
        )
