"""The agent process's side of its HTTP API bodies, without pydantic.

:mod:`tether.agent.schemas` is the contract: the server (:mod:`tether.agentconn`) parses the
agent's answers with those pydantic models and builds its requests from them. The agent itself
is one process per workspace and mostly idle, and pydantic (with the compiled validators of
~30 models) was a quarter of its resident memory; so the agent speaks the same bodies through
the plain dataclasses and hand-written request checks below. They mirror the models field by
field — tests/unit/agent/test_agent_wire.py checks every class against its model and every
request check against the model's validation (accepts only what the model accepts, the same
values; rejects with a 400 ``invalid_input`` naming the field).

The request checks are strict JSON: numbers must be JSON numbers and booleans JSON booleans
(pydantic's lax mode would also take ``"10"``); the server's client never sends anything else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any, Literal

from tether.errors import InvalidInput

EXEC_ENV: dict[str, str] = {
    "TETHER_CHAT_AGENT": "true",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "EDITOR": "true",
    "VISUAL": "true",
    "GIT_EDITOR": "true",
    "GIT_TERMINAL_PROMPT": "0",
    "NO_COLOR": "1",
    "TERM": "dumb",
}
"""The non-interactive environment of every command (docs/behaviour.md §5.2), so nothing
waits for a human (pagers, editors, git prompts). The agent sets it for every command; the
``execute`` tool also sends it with each request. Read-only by convention: copy it."""


EXEC_DEFAULT_TIMEOUT_S = 10.0
EXEC_MAX_TIMEOUT_S = 3600.0

_MISSING: Any = object()


def dump(value: Any) -> bytes:
    """A response body as compact JSON bytes (datetimes as ISO 8601 with ``Z``)."""
    return _ENCODER.encode(value).encode()


def _json_default(value: object) -> object:
    # Dataclasses are encoded field by field here, as the encoder meets them: no copy of
    # the whole value first (dataclasses.asdict deep-copies every leaf).
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    raise TypeError(f"cannot encode {type(value).__name__}")


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"))


# --- request checks ---------------------------------------------------------------------------


def parse_json(raw: bytes) -> Any:
    """The request body as JSON (an empty body is ``{}``)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from None


def _fail(where: str, message: str) -> InvalidInput:
    return InvalidInput(f"{where}: {message}", field=where)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "Input should be a valid dictionary or object")
    return value


def _at(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _str(
    data: dict[str, Any],
    key: str,
    *,
    prefix: str = "",
    min_length: int = 0,
    default: Any = _MISSING,
) -> Any:
    where = _at(prefix, key)
    if key not in data:
        if default is _MISSING:
            raise _fail(where, "Field required")
        return default
    value = data[key]
    if value is None and default is None:
        return None
    if not isinstance(value, str):
        raise _fail(where, "Input should be a valid string")
    if len(value) < min_length:
        raise _fail(where, f"String should have at least {min_length} character")
    return value


def _float(
    data: dict[str, Any],
    key: str,
    *,
    gt: float | None = None,
    le: float | None = None,
    default: Any = _MISSING,
) -> Any:
    if key not in data or (data[key] is None and default is None):
        if default is _MISSING:
            raise _fail(key, "Field required")
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(key, "Input should be a valid finite number")
    if gt is not None and not value > gt:
        raise _fail(key, f"Input should be greater than {gt:g}")
    if le is not None and not value <= le:
        raise _fail(key, f"Input should be less than or equal to {le:g}")
    return float(value)


def _int(data: dict[str, Any], key: str, *, ge: int, default: int) -> int:
    if key not in data:
        return default
    value = data[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, "Input should be a valid integer")
    if value < ge:
        raise _fail(key, f"Input should be greater than or equal to {ge}")
    return value


def _bool(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _fail(key, "Input should be a valid boolean")
    return value


def _str_dict(data: dict[str, Any], key: str) -> dict[str, str]:
    value = data.get(key)
    if key not in data:
        return {}
    mapping = _object(value, key)
    for name, item in mapping.items():
        if not isinstance(item, str):
            raise _fail(f"{key}.{name}", "Input should be a valid string")
    return dict(mapping)


# What an exec (argv, environment block) cannot carry: C strings end at a NUL, a variable's
# name ends at its first "=". Checked on input, so the start is not a 500 (issue #12).
EXEC_NUL_MESSAGE = "must not contain a NUL character"


def exec_env_problem(name: str, value: str) -> str | None:
    """Why ``name=value`` cannot be in a command's environment, or None when it can."""
    if not name or "=" in name or "\0" in name:
        return "a variable name must be non-empty, without '=' or a NUL character"
    if "\0" in value:
        return f"the value {EXEC_NUL_MESSAGE}"
    return None


@dataclass(frozen=True)
class ExecRequest:
    command: str
    timeout_s: float | None = None
    workdir: str | None = None
    background: bool = False
    env: dict[str, str] = field(default_factory=dict)
    stream: bool = False

    @classmethod
    def parse(cls, value: Any) -> ExecRequest:
        data = _object(value, "body")
        command = _str(data, "command", min_length=1)
        if "\0" in command:
            raise _fail("command", EXEC_NUL_MESSAGE)
        env = _str_dict(data, "env")
        for name, item in env.items():
            problem = exec_env_problem(name, item)
            if problem is not None:
                raise _fail(f"env.{name}", problem)
        return cls(
            command=command,
            timeout_s=_float(data, "timeout_s", gt=0, le=EXEC_MAX_TIMEOUT_S, default=None),
            workdir=_str(data, "workdir", default=None),
            background=_bool(data, "background", False),
            env=env,
            stream=_bool(data, "stream", False),
        )


@dataclass(frozen=True)
class SignalRequest:
    signal: Literal["terminate", "kill"]

    @classmethod
    def parse(cls, value: Any) -> SignalRequest:
        data = _object(value, "body")
        sig = _str(data, "signal")
        if sig not in ("terminate", "kill"):
            raise _fail("signal", "Input should be 'terminate' or 'kill'")
        return cls(signal=sig)


@dataclass(frozen=True)
class ReadFileRequest:
    path: str
    offset: int = 1
    limit: int = 2000

    @classmethod
    def parse(cls, value: Any) -> ReadFileRequest:
        data = _object(value, "body")
        return cls(
            path=_str(data, "path", min_length=1),
            offset=_int(data, "offset", ge=1, default=1),
            limit=_int(data, "limit", ge=1, default=2000),
        )


@dataclass(frozen=True)
class WriteFileRequest:
    path: str
    content: str

    @classmethod
    def parse(cls, value: Any) -> WriteFileRequest:
        data = _object(value, "body")
        return cls(path=_str(data, "path", min_length=1), content=_str(data, "content"))


@dataclass(frozen=True)
class Edit:
    search: str
    replace: str


@dataclass(frozen=True)
class FileEdits:
    path: str
    edits: list[Edit]


@dataclass(frozen=True)
class EditRequest:
    files: list[FileEdits]

    @classmethod
    def parse(cls, value: Any) -> EditRequest:
        data = _object(value, "body")
        if "files" not in data:
            raise _fail("files", "Field required")
        raw_files = data["files"]
        if not isinstance(raw_files, list):
            raise _fail("files", "Input should be a valid list")
        specs = []
        for i, raw in enumerate(raw_files):
            where = f"files.{i}"
            spec = _object(raw, where)
            path = _str(spec, "path", prefix=where, min_length=1)
            if "edits" not in spec:
                raise _fail(f"{where}.edits", "Field required")
            raw_edits = spec["edits"]
            if not isinstance(raw_edits, list):
                raise _fail(f"{where}.edits", "Input should be a valid list")
            edits = []
            for j, raw_edit in enumerate(raw_edits):
                at = f"{where}.edits.{j}"
                edit = _object(raw_edit, at)
                edits.append(
                    Edit(
                        search=_str(edit, "search", prefix=at),
                        replace=_str(edit, "replace", prefix=at),
                    )
                )
            specs.append(FileEdits(path=path, edits=edits))
        return cls(files=specs)


@dataclass(frozen=True)
class ListDirRequest:
    path: str = "."

    @classmethod
    def parse(cls, value: Any) -> ListDirRequest:
        data = _object(value, "body")
        return cls(path=_str(data, "path", default="."))


@dataclass(frozen=True)
class McpCallRequest:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any) -> McpCallRequest:
        data = _object(value, "body")
        arguments = _object(data["arguments"], "arguments") if "arguments" in data else {}
        return cls(name=_str(data, "name", min_length=1), arguments=dict(arguments))


# --- responses (field for field as in tether.agent.schemas) -----------------------------------


@dataclass
class Health:
    status: str
    lifecycle: str
    uptime_s: float


@dataclass
class ExecResult:
    exit_code: int
    output: str
    truncated: bool
    wall_ms: int
    timed_out: bool
    error: str | None = None
    process_id: str | None = None


@dataclass
class BackgroundStarted:
    process_id: str


@dataclass
class ProcessInfo:
    process_id: str
    command: str
    running: bool
    exit_code: int | None
    started_at: datetime


@dataclass
class ProcessList:
    processes: list[ProcessInfo]


@dataclass
class ProcessOutput:
    process_id: str
    running: bool
    exit_code: int | None
    output: str
    truncated: bool


@dataclass
class SignalResult:
    process_id: str
    signal: str
    message: str


@dataclass
class ReadFileResult:
    path: str
    content: str
    total_lines: int
    lines_read: int
    file_size: int
    binary: bool


@dataclass
class WriteFileResult:
    path: str
    bytes_written: int


@dataclass
class EditError:
    index: int | None
    message: str


@dataclass
class FileEditResult:
    path: str
    ok: bool
    applied: int
    errors: list[EditError] = field(default_factory=list)


@dataclass
class EditResult:
    files: list[FileEditResult]


@dataclass
class DirEntry:
    name: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int


@dataclass
class ListDirResult:
    path: str
    entries: list[DirEntry]


@dataclass
class InstructionFile:
    path: str
    content: str
    truncated: bool


@dataclass
class Skill:
    name: str
    description: str
    directory: str
    path: str


@dataclass
class Instructions:
    os: str
    directory: str
    files: list[InstructionFile]
    skills: list[Skill] = field(default_factory=list)


@dataclass
class McpTool:
    name: str
    server: str
    tool: str
    description: str
    input_schema: dict[str, Any]


@dataclass
class McpServerStatus:
    name: str
    status: Literal["ok", "error", "pending"]
    error: str | None = None
    retry_in_s: float | None = None


@dataclass
class McpToolList:
    tools: list[McpTool]
    servers: list[McpServerStatus]


@dataclass
class McpContent:
    type: str
    text: str | None = None
    data: str | None = None
    mime_type: str | None = None


@dataclass
class McpCallResult:
    content: list[McpContent]
    is_error: bool
