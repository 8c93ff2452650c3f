"""The chat renderer (live deltas vs persisted messages, compact tool lines), the
``tether chat "message"`` routing, and the reconnecting stream follower."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tether.cli.chat_render import ChatRenderer, tool_call_line, tool_result_line
from tether.cli.chat_stream import follow_events
from tether.cli.common import CliError
from tether.cli.main import build_app
from tether.sdk import TetherClient
from tether.sdk.chats import ChatsAPI


class Captured:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, str]] = []

    def write(self, text: str, style: str = "") -> None:
        self.chunks.append((text, style))

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.chunks)


class RecordedActivity:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def tool_started(self, call_id: str, tool_name: str) -> None:
        self.calls.append(("started", call_id, tool_name))

    def tool_finished(self, call_id: str) -> None:
        self.calls.append(("finished", call_id))

    def build_started(self, workspace_id: str, build_id: str) -> None:
        self.calls.append(("build", workspace_id, build_id))


def _msg(role: str, *parts: dict[str, Any], visibility: str = "both") -> dict[str, Any]:
    return {"role": role, "parts": list(parts), "visibility": visibility}


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool-call", "tool_call_id": call_id, "tool_name": name, "args": args}


def _result(call_id: str, result: Any) -> dict[str, Any]:
    return {"type": "tool-result", "tool_call_id": call_id, "tool_name": "t", "result": result}


def test_streamed_text_is_not_repeated_by_the_persisted_message() -> None:
    out = Captured()
    r = ChatRenderer(out)
    for delta in ["Hello ", "wor"]:
        r.event("message_part", {"kind": "text", "delta": delta})
    assert out.text == "Hello wor"  # incremental, no newline per delta
    r.event("message", _msg("assistant", {"type": "text", "text": "Hello world"}))
    assert out.text == "Hello world\n"
    assert r.reply == "Hello world"


def test_persisted_only_turn_is_rendered_once_with_tool_lines() -> None:
    out, activity = Captured(), RecordedActivity()
    r = ChatRenderer(out, activity=activity, show_user=False)
    r.event("message", _msg("user", {"type": "text", "text": "hi"}))
    call = _call("c1", "execute", {"command": "python3 hello.py"})
    r.event("message", _msg("assistant", call))
    r.event("message_part", {"kind": "tool-call", **call})  # the live copy: not shown again
    ok = {"kind": "tool-result", **_result("c1", {"exit_code": 0, "output": "a\nb\n"})}
    r.event("message_part", ok)
    r.event("message", _msg("tool", _result("c1", {"exit_code": 0, "output": "a\nb\n"})))
    assert out.text.splitlines() == [
        '→ execute {"command": "python3 hello.py"}',
        "  ← ok exit 0 · 2 lines",
    ]
    assert activity.calls == [("started", "c1", "execute"), ("finished", "c1")]
    assert r.tool_calls == 1


def test_tool_error_line_names_code_and_remediation() -> None:
    text, style = tool_result_line(
        {
            "is_error": True,
            "error_code": "workspace_stopped",
            "result": "the workspace is stopped",
            "remediation": "start_workspace",
        }
    )
    assert text == (
        "← error workspace_stopped: the workspace is stopped (remediation: start_workspace)"
    )
    assert style == "red"


@pytest.mark.parametrize(
    ("result", "line"),
    [
        ({"exit_code": 2, "output": "x\n"}, "← failed exit 2 · 1 line"),
        ({"templates": [{"id": "1"}], "count": 1}, "← ok · 1 template"),
        ({"ok": True, "path": "a", "bytes_written": 27}, "← ok · 27 bytes written"),
        ({"content": "1\n2\n3\n"}, "← ok · 3 lines"),
        ({"error": "workspace build failed: boom", "build_id": "b"}, "← error: workspace …"),
        ({"created": True, "workspace_name": "me/ws"}, "← ok workspace me/ws created"),
        (None, "← ok"),
    ],
)
def test_tool_result_lines(result: Any, line: str) -> None:
    text, _ = tool_result_line({"result": result})
    if line.endswith("…"):
        assert text.startswith(line[:-1])
    else:
        assert text == line


def test_long_tool_args_are_clipped() -> None:
    line = tool_call_line("write_file", {"path": "a.py", "content": "x" * 500})
    assert line.startswith('→ write_file {"path": "a.py"') and line.endswith("…")
    assert len(line) < 140
    assert tool_call_line("list_templates", {}) == "→ list_templates"


def test_lines_end_a_partial_text_line_and_hidden_messages_are_skipped() -> None:
    out, activity = Captured(), RecordedActivity()
    r = ChatRenderer(out, activity=activity)
    r.event("message", _msg("user", {"type": "text", "text": "ctx"}, visibility="model"))
    r.event("message_part", {"kind": "text", "delta": "thinking about it"})
    r.event("error", {"message": "the model provider failed", "code": "provider_error"})
    r.event("status", {"status": "running", "workspace_id": "w", "build_id": "b"})
    r.event("message", _msg("user", {"type": "text", "text": "next"}))
    assert out.text == (
        "thinking about it\nerror: the model provider failed [provider_error]\n› next\n"
    )
    assert activity.calls == [("build", "w", "b")]


def test_bare_message_routes_to_new_chat() -> None:
    runner = CliRunner()
    app = build_app()
    routed = runner.invoke(app, ["chat", "hello there", "--help"])
    assert routed.exit_code == 0 and "Start a chat" in routed.output
    listed = runner.invoke(app, ["chat", "list", "--help"])
    assert listed.exit_code == 0 and "List your chats" in listed.output


# --- reconnecting follower -----------------------------------------------------------------


class _Dropping(httpx.AsyncByteStream):
    """Sends ``body`` then fails like a dropped connection."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body
        raise httpx.ReadError("connection reset")

    async def aclose(self) -> None:
        return None


def _sse(event: str, data: dict[str, Any], id: str | None = None) -> bytes:
    head = f"id: {id}\n" if id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def test_follow_reconnects_with_last_event_id_and_stops_when_idle() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        if len(seen) == 1:
            body = _sse("status", {"status": "running"}) + _sse(
                "message_part", {"kind": "text", "delta": "a"}, "3.1"
            )
            return httpx.Response(200, stream=_Dropping(body))
        body = _sse("message_part", {"kind": "text", "delta": "b"}, "3.2") + _sse(
            "status", {"status": "waiting"}, "3.3"
        )
        return httpx.Response(200, content=body)

    async with TetherClient("http://t", "tok", transport=httpx.MockTransport(handler)) as c:
        events = [ev async for ev in follow_events(ChatsAPI(c), uuid.uuid4(), base_delay_s=0.0)]
    assert seen == [None, "3.1"]
    assert [(e.event, e.id) for e in events] == [
        ("status", None),
        ("message_part", "3.1"),
        ("message_part", "3.2"),
        ("status", "3.3"),
    ]


async def test_follow_gives_up_after_bounded_retries() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, json={"code": "unavailable", "message": "down"})

    async with TetherClient("http://t", "tok", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(CliError, match="gave up after 2 reconnects"):
            async for _ in follow_events(ChatsAPI(c), uuid.uuid4(), retries=2, base_delay_s=0.0):
                pass
    assert calls == 3


async def test_follow_raises_not_found_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": "not_found", "message": "chat not found"})

    async with TetherClient("http://t", "tok", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(Exception, match="chat not found"):
            async for _ in follow_events(ChatsAPI(c), uuid.uuid4(), base_delay_s=0.0):
                pass


def test_system_notice_is_shown_on_its_own_line() -> None:
    out = Captured()
    r = ChatRenderer(out)
    r.event("message_part", {"kind": "text", "delta": "Work"})
    notice = "Workspace MCP servers unavailable, their tools are missing: hangs (timed out)"
    r.event("message", _msg("system", {"type": "text", "text": notice}, visibility="user"))
    assert out.chunks[-1] == (f"! {notice}\n", "yellow")
    assert out.text == f"Work\n! {notice}\n"
    assert r.reply == ""  # not the assistant's reply


def test_an_image_part_is_shown_by_type_and_size_never_its_bytes() -> None:
    out = Captured()
    r = ChatRenderer(out, show_user=True)
    data = "A" * 4096  # 3 KiB decoded
    r.message(
        _msg(
            "user",
            {"type": "text", "text": "look"},
            {"type": "image", "media_type": "image/png", "data": data},
        )
    )
    assert "look [image: image/png 3 KiB]" in out.text and data not in out.text
