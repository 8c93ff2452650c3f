"""Request and response bodies of the agent's HTTP API.

The agent validates requests with these models and :mod:`tether.agentconn` parses responses
with them, so both sides agree by construction. Errors are ``ErrorBody`` with an HTTP status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Defined beside the agent's pydantic-free bodies; re-exported for the server side.
from tether.agent.wire import EXEC_ENV as EXEC_ENV
from tether.agent.wire import EXEC_NUL_MESSAGE, exec_env_problem

EXEC_DEFAULT_TIMEOUT_S = 10.0
EXEC_MAX_TIMEOUT_S = 3600.0


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorBody(_Body):
    code: str
    message: str


class Health(_Body):
    status: str
    lifecycle: str
    uptime_s: float


# --- exec and processes ---------------------------------------------------------------------


class ExecRequest(_Body):
    command: str = Field(min_length=1)
    timeout_s: float | None = Field(default=None, gt=0, le=EXEC_MAX_TIMEOUT_S)
    workdir: str | None = None
    background: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    stream: bool = False  # foreground: NDJSON lines as the command runs (agentconn.execstream)

    @field_validator("command")
    @classmethod
    def _no_nul(cls, command: str) -> str:
        if "\0" in command:
            raise ValueError(EXEC_NUL_MESSAGE)
        return command

    @field_validator("env")
    @classmethod
    def _representable(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            problem = exec_env_problem(name, value)
            if problem is not None:
                raise ValueError(f"{name!r}: {problem}")
        return env


class ExecResult(_Body):
    exit_code: int
    output: str
    truncated: bool
    wall_ms: int
    timed_out: bool
    error: str | None = None
    process_id: str | None = None  # streamed foreground commands: readable again by this id


class BackgroundStarted(_Body):
    process_id: str


class ProcessInfo(_Body):
    process_id: str
    command: str
    running: bool
    exit_code: int | None
    started_at: datetime


class ProcessList(_Body):
    processes: list[ProcessInfo]


class ProcessOutput(_Body):
    process_id: str
    running: bool
    exit_code: int | None
    output: str
    truncated: bool


class SignalRequest(_Body):
    signal: Literal["terminate", "kill"]


class SignalResult(_Body):
    process_id: str
    signal: str
    message: str


# --- files ----------------------------------------------------------------------------------


class ReadFileRequest(_Body):
    path: str = Field(min_length=1)
    offset: int = Field(default=1, ge=1)
    limit: int = Field(default=2000, ge=1)


class ReadFileResult(_Body):
    path: str
    content: str
    total_lines: int
    lines_read: int
    file_size: int
    binary: bool


class WriteFileRequest(_Body):
    path: str = Field(min_length=1)
    content: str


class WriteFileResult(_Body):
    path: str
    bytes_written: int


class Edit(_Body):
    search: str
    replace: str


class FileEdits(_Body):
    path: str = Field(min_length=1)
    edits: list[Edit]


class EditRequest(_Body):
    files: list[FileEdits]


class EditError(_Body):
    index: int | None  # the failing edit's position; None for a file-level error
    message: str


class FileEditResult(_Body):
    path: str
    ok: bool
    applied: int
    errors: list[EditError] = Field(default_factory=list)


class EditResult(_Body):
    files: list[FileEditResult]


class ListDirRequest(_Body):
    path: str = "."


class DirEntry(_Body):
    name: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int


class ListDirResult(_Body):
    path: str
    entries: list[DirEntry]


# --- instructions -----------------------------------------------------------------------------


class InstructionFile(_Body):
    path: str
    content: str
    truncated: bool


class Skill(_Body):
    """A skill's metadata (``.agents/skills/<name>/SKILL.md``); the body is read on demand."""

    name: str
    description: str
    directory: str  # the skill's directory
    path: str  # its SKILL.md


class Instructions(_Body):
    os: str
    directory: str
    files: list[InstructionFile]
    skills: list[Skill] = []  # older agents send none


# --- MCP --------------------------------------------------------------------------------------


class McpTool(_Body):
    name: str  # "<server>__<tool>", what the model calls
    server: str
    tool: str
    description: str
    input_schema: dict[str, Any]


class McpServerStatus(_Body):
    name: str
    status: Literal["ok", "error", "pending"]  # pending: still connecting, tools come later
    error: str | None = None
    retry_in_s: float | None = None  # a failed server's next attempt (negative cache)


class McpToolList(_Body):
    tools: list[McpTool]
    servers: list[McpServerStatus]


class McpCallRequest(_Body):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class McpContent(_Body):
    type: str  # "text" | "image" | "audio"
    text: str | None = None
    data: str | None = None  # base64 for image/audio
    mime_type: str | None = None


class McpCallResult(_Body):
    content: list[McpContent]
    is_error: bool
