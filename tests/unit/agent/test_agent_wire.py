"""The agent process's pydantic-free bodies and frames agree with the contract's models.

:mod:`tether.agent.schemas` and :mod:`tether.agent.protocol` are what the server speaks;
:mod:`tether.agent.wire` and :mod:`tether.agent.frames` are what the agent process speaks.
Every class must have the model's fields, every answer the agent sends must parse as its
model to the same values, and every request check must accept only what the model accepts
(with the same values) — the agent may be stricter, never looser.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tether.agent import frames, protocol, schemas, wire
from tether.errors import InvalidInput

RESPONSES = [
    "Health",
    "ExecResult",
    "BackgroundStarted",
    "ProcessInfo",
    "ProcessList",
    "ProcessOutput",
    "SignalResult",
    "ReadFileResult",
    "WriteFileResult",
    "EditError",
    "FileEditResult",
    "EditResult",
    "DirEntry",
    "ListDirResult",
    "InstructionFile",
    "Skill",
    "Instructions",
    "McpTool",
    "McpServerStatus",
    "McpToolList",
    "McpContent",
    "McpCallResult",
]
REQUESTS = [
    "ExecRequest",
    "SignalRequest",
    "ReadFileRequest",
    "WriteFileRequest",
    "Edit",
    "FileEdits",
    "EditRequest",
    "ListDirRequest",
    "McpCallRequest",
]


@pytest.mark.parametrize("name", RESPONSES + REQUESTS)
def test_every_body_has_the_fields_of_its_model(name: str) -> None:
    model: type[BaseModel] = getattr(schemas, name)
    plain = getattr(wire, name)
    assert [f.name for f in dataclasses.fields(plain)] == list(model.model_fields)


def test_wire_and_schema_constants_agree() -> None:
    assert wire.EXEC_DEFAULT_TIMEOUT_S == schemas.EXEC_DEFAULT_TIMEOUT_S
    assert wire.EXEC_MAX_TIMEOUT_S == schemas.EXEC_MAX_TIMEOUT_S


SAMPLES: list[Any] = [
    wire.Health(status="ok", lifecycle="ready", uptime_s=1.5),
    wire.ExecResult(exit_code=0, output="hé\n", truncated=False, wall_ms=3, timed_out=False),
    wire.ExecResult(
        exit_code=-1,
        output="",
        truncated=True,
        wall_ms=10,
        timed_out=True,
        error="command timed out after 1s",
        process_id="abc",
    ),
    wire.ProcessList(
        processes=[
            wire.ProcessInfo(
                process_id="p1",
                command="sleep 1",
                running=True,
                exit_code=None,
                started_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            )
        ]
    ),
    wire.EditResult(
        files=[
            wire.FileEditResult(
                path="/a", ok=False, applied=0, errors=[wire.EditError(index=None, message="x")]
            )
        ]
    ),
    wire.ListDirResult(path="/", entries=[wire.DirEntry(name="a", type="dir", size=0)]),
    wire.Instructions(
        os="linux",
        directory="/w",
        files=[wire.InstructionFile(path="/w/AGENTS.md", content="c", truncated=False)],
        skills=[wire.Skill(name="s", description="d", directory="/w/s", path="/w/s/SKILL.md")],
    ),
    wire.McpToolList(
        tools=[
            wire.McpTool(
                name="a__b", server="a", tool="b", description="", input_schema={"type": "object"}
            )
        ],
        servers=[wire.McpServerStatus(name="a", status="error", error="e", retry_in_s=2.0)],
    ),
    wire.McpCallResult(
        content=[wire.McpContent(type="image", data="AAA=", mime_type="image/png")],
        is_error=False,
    ),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_what_the_agent_sends_parses_as_its_model_to_the_same_values(sample: Any) -> None:
    model: type[BaseModel] = getattr(schemas, type(sample).__name__)
    parsed = model.model_validate_json(wire.dump(sample))
    assert parsed.model_dump() == dataclasses.asdict(sample)
    # and the agent's encoding is the model's own JSON encoding
    assert json.loads(wire.dump(sample)) == json.loads(parsed.model_dump_json())


REQUEST_CASES: list[tuple[str, Any]] = [
    ("ExecRequest", {"command": "true"}),
    ("ExecRequest", {"command": "ls", "timeout_s": 5, "workdir": "w", "env": {"A": "b"}}),
    ("ExecRequest", {"command": "x", "timeout_s": None, "workdir": None, "background": True}),
    ("ExecRequest", {"command": "x", "stream": True, "unknown": 1}),
    ("ExecRequest", {"command": "x", "timeout_s": 3600}),
    ("ExecRequest", {"command": "x", "timeout_s": 3600.5}),
    ("ExecRequest", {"command": "x", "timeout_s": 0}),
    ("ExecRequest", {"command": "x", "timeout_s": -1}),
    ("ExecRequest", {"command": "x", "timeout_s": float("nan")}),
    ("ExecRequest", {"command": "x", "timeout_s": float("inf")}),
    ("ExecRequest", {"command": ""}),
    ("ExecRequest", {"command": 5}),
    ("ExecRequest", {"command": None}),
    ("ExecRequest", {}),
    ("ExecRequest", []),
    ("ExecRequest", "true"),
    ("ExecRequest", None),
    ("ExecRequest", {"command": "x", "env": {"A": 1}}),
    ("ExecRequest", {"command": "x", "env": None}),
    ("ExecRequest", {"command": "x", "env": ["A"]}),
    ("ExecRequest", {"command": "x", "background": None}),
    ("ExecRequest", {"command": "x", "stream": "yes"}),
    ("ExecRequest", {"command": "x", "workdir": 3}),
    ("ExecRequest", {"command": "echo a\0b"}),
    ("ExecRequest", {"command": "x", "env": {"A=B": "x"}}),
    ("ExecRequest", {"command": "x", "env": {"": "x"}}),
    ("ExecRequest", {"command": "x", "env": {"A\0": "x"}}),
    ("ExecRequest", {"command": "x", "env": {"A": "x\0y"}}),
    ("ExecRequest", {"command": "x", "env": {"A": "b=c", "B": ""}}),
    ("SignalRequest", {"signal": "terminate"}),
    ("SignalRequest", {"signal": "kill"}),
    ("SignalRequest", {"signal": "hup"}),
    ("SignalRequest", {"signal": 9}),
    ("SignalRequest", {}),
    ("ReadFileRequest", {"path": "a"}),
    ("ReadFileRequest", {"path": "a", "offset": 3, "limit": 7}),
    ("ReadFileRequest", {"path": "a", "offset": 2.0}),
    ("ReadFileRequest", {"path": "a", "offset": 2.5}),
    ("ReadFileRequest", {"path": "a", "offset": 0}),
    ("ReadFileRequest", {"path": "a", "limit": 0}),
    ("ReadFileRequest", {"path": "a", "limit": True}),
    ("ReadFileRequest", {"path": "a", "offset": None}),
    ("ReadFileRequest", {"path": ""}),
    ("WriteFileRequest", {"path": "a", "content": ""}),
    ("WriteFileRequest", {"path": "a"}),
    ("WriteFileRequest", {"path": "a", "content": None}),
    ("EditRequest", {"files": []}),
    ("EditRequest", {"files": [{"path": "a", "edits": [{"search": "x", "replace": "y"}]}]}),
    ("EditRequest", {"files": [{"path": "a", "edits": []}]}),
    ("EditRequest", {"files": [{"path": "", "edits": []}]}),
    ("EditRequest", {"files": [{"path": "a"}]}),
    ("EditRequest", {"files": [{"path": "a", "edits": [{"search": "x"}]}]}),
    ("EditRequest", {"files": [{"path": "a", "edits": [{"search": "x", "replace": 1}]}]}),
    ("EditRequest", {"files": [{"path": "a", "edits": "x"}]}),
    ("EditRequest", {"files": ["a"]}),
    ("EditRequest", {"files": None}),
    ("EditRequest", {}),
    ("ListDirRequest", {}),
    ("ListDirRequest", {"path": "sub"}),
    ("ListDirRequest", {"path": None}),
    ("ListDirRequest", {"path": 1}),
    ("McpCallRequest", {"name": "a__b"}),
    ("McpCallRequest", {"name": "a__b", "arguments": {"x": [1, {"y": None}]}}),
    ("McpCallRequest", {"name": "a__b", "arguments": None}),
    ("McpCallRequest", {"name": "a__b", "arguments": [1]}),
    ("McpCallRequest", {"name": ""}),
    ("McpCallRequest", {}),
]


@pytest.mark.parametrize(("name", "body"), REQUEST_CASES)
def test_request_checks_accept_only_what_the_model_accepts(name: str, body: Any) -> None:
    model: type[BaseModel] = getattr(schemas, name)
    try:
        expected: BaseModel | None = model.model_validate(body)
    except ValidationError:
        expected = None
    try:
        got = getattr(wire, name).parse(body)
    except InvalidInput as exc:
        assert exc.code == "invalid_input" and exc.http_status == 400
        assert exc.message.startswith(f"{exc.details.get('field') or 'body'}: ")
        return
    assert expected is not None, f"the agent accepted what the model rejects: {body!r}"
    assert dataclasses.asdict(got) == expected.model_dump()


def test_request_checks_are_not_looser_than_needed() -> None:
    """Every valid request the server's client can build parses (the stricter cases are only
    lax-mode coercions such as ``"10"`` for a number, which the client never sends)."""
    for name, body in REQUEST_CASES:
        model: type[BaseModel] = getattr(schemas, name)
        try:
            expected = model.model_validate(body)
        except ValidationError:
            continue
        client_body = json.loads(expected.model_dump_json())
        got = getattr(wire, name).parse(client_body)
        assert dataclasses.asdict(got) == expected.model_dump(), name


def test_a_body_that_is_not_json_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        wire.parse_json(b"{nope")
    with pytest.raises(InvalidInput, match="not JSON"):
        wire.parse_json(b"[" * 100_000)  # nesting deep enough to overflow the parser
    assert wire.parse_json(b"  ") == {}


# --- session frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        frames.Hello(address="unix:/run/a.sock", os="linux", version="0.1.0", pid=7),
        frames.Ping(),
        frames.Lifecycle(state=frames.LifecycleState.START_ERROR),
        frames.Log(lines=["a", "b"], level="error"),
    ],
    ids=lambda f: type(f).__name__,
)
def test_agent_frames_parse_as_the_server_models_to_the_same_values(frame: Any) -> None:
    parsed = protocol.parse_agent_frame(frames.encode_frame(frame))
    assert type(parsed).__name__ == type(frame).__name__
    assert parsed.model_dump() == dataclasses.asdict(frame)


def test_frames_have_the_fields_of_the_models() -> None:
    for name in ("Hello", "Ping", "Lifecycle", "Log", "Manifest", "Shutdown"):
        model: type[BaseModel] = getattr(protocol, name)
        plain = getattr(frames, name)
        assert {f.name for f in dataclasses.fields(plain)} == set(model.model_fields), name


_AGENT_ID = str(uuid.uuid4())
_WS_ID = str(uuid.uuid4())
_MANIFEST = {"type": "manifest", "agent_id": _AGENT_ID, "name": "main", "workspace_id": _WS_ID}

SERVER_FRAMES: list[Any] = [
    {"type": "ping"},
    {"type": "shutdown", "extra": 1},
    _MANIFEST,
    {
        **_MANIFEST,
        "directory": "proj",
        "startup_script": "echo hi",
        "startup_script_timeout_s": 5,
        "ping_interval_s": 0.5,
        "silence_timeout_s": 3,
        "env": {"A": "b"},
        "mcp": {"mcpServers": {}},
        "mcp_connect_timeout_s": 2,
        "mcp_retry_s": 0.25,
    },
    {**_MANIFEST, "mcp_connect_timeout_s": 0},
    {**_MANIFEST, "mcp_retry_s": -1},
    {**_MANIFEST, "env": {"A": 1}},
    {**_MANIFEST, "env": None},
    {**_MANIFEST, "agent_id": "not-a-uuid"},
    {**_MANIFEST, "agent_id": 5},
    {**_MANIFEST, "name": None},
    {**_MANIFEST, "ping_interval_s": "2"},
    {**_MANIFEST, "ping_interval_s": True},
    {**_MANIFEST, "mcp": [1]},
    {"type": "manifest"},
    {"type": "hello"},
    {"type": None},
    {},
    [],
    "ping",
]


@pytest.mark.parametrize("data", SERVER_FRAMES)
def test_server_frame_parser_accepts_only_what_the_model_accepts(data: Any) -> None:
    text = json.dumps(data)
    try:
        expected: Any = protocol.parse_server_frame(text)
    except ValidationError:
        expected = None
    try:
        got = frames.parse_server_frame(text)
    except frames.FrameError:
        return
    assert expected is not None, f"the agent accepted what the model rejects: {data!r}"
    assert type(got).__name__ == type(expected).__name__
    assert dataclasses.asdict(got) == expected.model_dump()


def test_server_frame_parser_rejects_garbage() -> None:
    for raw in (b"", b"{", b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(frames.FrameError):
            frames.parse_server_frame(raw)
