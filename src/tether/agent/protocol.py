"""The agent session protocol: JSON text frames on the WebSocket ``/api/v1/agent/session``.

The agent connects with ``Authorization: Bearer <agent token>`` and speaks first:

    agent → server   hello                        (first frame of every connection)
    server → agent   manifest                     (reply to hello)
    agent → server   ping | lifecycle | log       (any time after the manifest)
    server → agent   ping                         (every ping interval: the server is alive)
    server → agent   shutdown                     (agent shuts down as on SIGTERM)

Liveness runs both ways: each side sends a ping every ``ping_interval_s``. The server marks
an agent unreachable when nothing arrived from it for ``agent_unreachable_after_s``; the agent
reconnects when nothing arrived from the server for the manifest's ``silence_timeout_s``.

After a reconnect the agent sends ``hello`` again and then its current lifecycle state; the
startup script runs only once per agent process. The server speaks through these models; the
agent process through :mod:`tether.agent.frames` (the same frames without pydantic, checked
against these models by tests/unit/agent/test_agent_wire.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# Re-exported: the server and the tests import it from here.
from tether.agent.lifecycle import LifecycleState as LifecycleState


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    address: str  # "127.0.0.1:PORT": where the agent's HTTP API listens
    os: str
    version: str
    pid: int


class Ping(_Frame):
    type: Literal["ping"] = "ping"


class Lifecycle(_Frame):
    type: Literal["lifecycle"] = "lifecycle"
    state: LifecycleState


class Log(_Frame):
    type: Literal["log"] = "log"
    source: str = "startup_script"
    level: Literal["info", "error"] = "info"
    lines: list[str]


class Manifest(_Frame):
    type: Literal["manifest"] = "manifest"
    agent_id: uuid.UUID
    name: str
    workspace_id: uuid.UUID
    directory: str | None = None  # relative to HOME, absolute, or None for HOME itself
    startup_script: str | None = None
    startup_script_timeout_s: float = 600.0
    ping_interval_s: float = 2.0
    silence_timeout_s: float | None = None  # reconnect when the server is silent this long
    env: dict[str, str] = Field(default_factory=dict)  # template env + TETHER_PARAM_<NAME>
    mcp: dict[str, Any] | None = None  # the template's MCP config, for .mcp.json (if absent)
    mcp_connect_timeout_s: float | None = Field(default=None, gt=0)  # per MCP server
    mcp_retry_s: float | None = Field(default=None, gt=0)  # first backoff of a failed server


class Shutdown(_Frame):
    type: Literal["shutdown"] = "shutdown"


AgentFrame = Annotated[Hello | Ping | Lifecycle | Log, Field(discriminator="type")]
"""Any frame the agent sends."""

ServerFrame = Annotated[Manifest | Ping | Shutdown, Field(discriminator="type")]
"""Any frame the server sends."""

_AGENT_FRAME: TypeAdapter[Hello | Ping | Lifecycle | Log] = TypeAdapter(AgentFrame)
_SERVER_FRAME: TypeAdapter[Manifest | Ping | Shutdown] = TypeAdapter(ServerFrame)


def parse_agent_frame(text: str | bytes) -> Hello | Ping | Lifecycle | Log:
    """Parse one agent→server frame; raises ``pydantic.ValidationError`` when malformed."""
    return _AGENT_FRAME.validate_json(text)


def parse_server_frame(text: str | bytes) -> Manifest | Ping | Shutdown:
    """Parse one server→agent frame; raises ``pydantic.ValidationError`` when malformed."""
    return _SERVER_FRAME.validate_json(text)


def encode_frame(frame: _Frame) -> str:
    """Serialise a frame for sending as a text message."""
    return frame.model_dump_json()
