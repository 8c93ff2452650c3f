"""What the SDK returns: the API's JSON shapes as pydantic models.

They mirror ``tether.api.schemas`` without importing the server (the SDK and CLI only speak
HTTP). Unknown fields are kept (``extra="allow"``), so a newer server does not break an older
client and ``model_dump(mode="json")`` round-trips what the server sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

IN_PROGRESS = frozenset({"pending", "running", "canceling"})
LIFECYCLE_DONE = frozenset({"ready", "start_error", "start_timeout"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class User(_Model):
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime
    disabled: bool = False
    disabled_at: datetime | None = None


class UserWithToken(_Model):
    user: User
    token: str


class ApiToken(_Model):
    """An API token's metadata (never its secret)."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class CreatedToken(_Model):
    token: ApiToken
    secret: str  # shown once


class DeletedUser(_Model):
    user: User
    data: str  # keep | remove
    workspaces: dict[str, str] = Field(default_factory=dict)
    chats_interrupted: int = 0
    chats_deleted: int = 0


class ModelInfo(_Model):
    """A configured model a chat can name (never its key or where the key comes from)."""

    name: str
    provider: str
    model: str
    default: bool = False
    source: str = "operator"
    stream: bool = True
    request_timeout_s: float | None = None
    connect_timeout_s: float | None = None
    max_retries: int | None = None
    context_window: int | None = None
    compaction_threshold: float | None = None
    images: bool = False  # accepts image parts
    base_url: str | None = None  # shown to admins only


class Template(_Model):
    id: uuid.UUID
    name: str
    display_name: str = ""
    description: str = ""
    backend: str = ""
    deprecated: bool = False
    active_version_id: uuid.UUID | None = None
    active_version: int | None = None
    spec: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class Build(_Model):
    id: uuid.UUID
    workspace_id: uuid.UUID
    build_number: int
    transition: str
    status: str
    job_id: uuid.UUID
    error: str | None = None
    reason: str = ""
    parameters: dict[str, str] = Field(default_factory=dict)
    template_version_id: uuid.UUID
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class BuildResult(_Model):
    build: Build
    created: bool
    action: str | None = None  # start: started | in_progress | already_running | rebuilt
    message: str | None = None


class Agent(_Model):
    id: uuid.UUID
    build_id: uuid.UUID
    name: str
    status: str
    lifecycle_state: str
    chat: bool = False
    display_order: int = 0
    first_connected_at: datetime | None = None
    last_connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    os: str | None = None
    directory: str | None = None
    version: str | None = None


class Workspace(_Model):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    template_id: uuid.UUID
    template_name: str
    state: str
    ttl_ms: int | None = None
    last_used_at: datetime
    deadline: datetime | None = None
    latest_build: Build | None = None
    agents: list[Agent] = Field(default_factory=list)
    created_at: datetime

    def chat_agent(self) -> Agent | None:
        """The agent chats and ``exec`` use: the one marked ``chat``, else the first."""
        if not self.agents:
            return None
        ordered = sorted(self.agents, key=lambda a: (a.display_order, a.name))
        return next((a for a in ordered if a.chat), ordered[0])


class LogLine(_Model):
    id: int
    level: str
    output: str


class BuildLogs(_Model):
    build: Build
    logs: list[LogLine]


class ExecResult(_Model):
    exit_code: int
    output: str
    truncated: bool = False
    wall_ms: int = 0
    timed_out: bool = False
    error: str | None = None


class BackgroundStarted(_Model):
    process_id: str


class ChatConfig(_Model):
    """The admin chat settings (``/api/v1/chat-config``)."""

    template_allowlist: list[uuid.UUID] = Field(default_factory=list)
    system_prompt: str = ""
    user_prompt: str = ""


class UsageLimits(_Model):
    """Tokens per user per calendar month (UTC): ``default_tokens`` for everyone, ``users``
    overrides (None: no limit)."""

    default_tokens: int | None = None
    users: dict[uuid.UUID, int | None] = Field(default_factory=dict)
    period: str = "month"


class MyUsage(_Model):
    period: str
    period_start: datetime
    resets_at: datetime
    input_tokens: int
    output_tokens: int
    requests: int
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
