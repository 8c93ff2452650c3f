"""The agent process's side of the session frames (:mod:`tether.agent.protocol`), without
pydantic: what the agent sends (hello, ping, lifecycle, log) as plain dataclasses, and a strict
parser for what the server sends (manifest, ping, shutdown).

:mod:`tether.agent.protocol` stays the contract (the server speaks through its models);
tests/unit/agent/test_agent_wire.py checks these frames field for field against it and that
the parser accepts only what the models accept, with the same values.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tether.agent.lifecycle import LifecycleState


class FrameError(ValueError):
    """A server frame that is not JSON, of an unknown type, or with a bad field."""


@dataclass(frozen=True)
class Hello:
    address: str
    os: str
    version: str
    pid: int
    type: Literal["hello"] = "hello"


@dataclass(frozen=True)
class Ping:
    type: Literal["ping"] = "ping"


@dataclass(frozen=True)
class Lifecycle:
    state: LifecycleState
    type: Literal["lifecycle"] = "lifecycle"


@dataclass(frozen=True)
class Log:
    lines: list[str]
    source: str = "startup_script"
    level: Literal["info", "error"] = "info"
    type: Literal["log"] = "log"


AgentFrame = Hello | Ping | Lifecycle | Log


def encode_frame(frame: AgentFrame) -> str:
    """One agent frame as a JSON text message."""
    data = asdict(frame)
    if isinstance(frame, Lifecycle):
        data["state"] = frame.state.value
    return json.dumps(data, separators=(",", ":"))


@dataclass(frozen=True)
class Manifest:
    agent_id: uuid.UUID
    name: str
    workspace_id: uuid.UUID
    directory: str | None = None
    startup_script: str | None = None
    startup_script_timeout_s: float = 600.0
    ping_interval_s: float = 2.0
    silence_timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    mcp: dict[str, Any] | None = None
    mcp_connect_timeout_s: float | None = None
    mcp_retry_s: float | None = None
    type: Literal["manifest"] = "manifest"


@dataclass(frozen=True)
class Shutdown:
    type: Literal["shutdown"] = "shutdown"


ServerFrame = Manifest | Ping | Shutdown

_MISSING: Any = object()


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise FrameError(f"{key}: field required")
        return default
    if value is None and default is None:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise FrameError(f"{key}: wrong type")
    return value


def _number(data: dict[str, Any], key: str, default: Any, *, positive: bool = False) -> Any:
    value = _get(data, key, (int, float), default)
    if value is None:
        return None
    if not math.isfinite(value):  # stricter than the model: the server sends finite numbers
        raise FrameError(f"{key}: not a finite number")
    if positive and not value > 0:
        raise FrameError(f"{key}: must be greater than 0")
    return float(value)


def _uuid(data: dict[str, Any], key: str) -> uuid.UUID:
    raw = _get(data, key, str, _MISSING)
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise FrameError(f"{key}: not a UUID") from None


def parse_server_frame(text: str | bytes) -> ServerFrame:
    """Parse one server→agent frame; raises :class:`FrameError` when malformed."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FrameError("a frame is a JSON object")
    kind = data.get("type")
    if kind == "ping":
        return Ping()
    if kind == "shutdown":
        return Shutdown()
    if kind != "manifest":
        raise FrameError(f"unknown frame type {kind!r}"[:100])
    env = _get(data, "env", dict, {})
    if not all(isinstance(v, str) for v in env.values()):
        raise FrameError("env: values must be strings")
    return Manifest(
        agent_id=_uuid(data, "agent_id"),
        name=_get(data, "name", str, _MISSING),
        workspace_id=_uuid(data, "workspace_id"),
        directory=_get(data, "directory", str, None),
        startup_script=_get(data, "startup_script", str, None),
        startup_script_timeout_s=_number(data, "startup_script_timeout_s", 600.0),
        ping_interval_s=_number(data, "ping_interval_s", 2.0),
        silence_timeout_s=_number(data, "silence_timeout_s", None),
        env=dict(env),
        mcp=_get(data, "mcp", dict, None),
        mcp_connect_timeout_s=_number(data, "mcp_connect_timeout_s", None, positive=True),
        mcp_retry_s=_number(data, "mcp_retry_s", None, positive=True),
    )
