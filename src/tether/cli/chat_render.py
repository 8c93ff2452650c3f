"""How a chat looks in a terminal: assistant text as it streams, tool calls and results as
one compact line each.

:class:`ChatRenderer` is fed the chat stream's events (``message_part``, ``message``,
``status``, ``error``, ``retry``) and writes through a :class:`Writer`. Live deltas and
persisted messages describe the same content twice (a fast turn may only be seen as
persisted messages), so text already streamed is not printed again and each tool call and
result is shown once, keyed by its ``tool_call_id``. Tool activity (a call waiting for its
result, a workspace build starting) is reported to an :class:`Activity` — the CLI turns it
into a spinner and build logs.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

MAX_ARGS_CHARS = 120
MAX_ERROR_CHARS = 300


class Writer(Protocol):
    def write(self, text: str, style: str = "") -> None:
        """Write ``text`` as is (no newline added)."""


class Activity(Protocol):
    def tool_started(self, call_id: str, tool_name: str) -> None: ...
    def tool_finished(self, call_id: str) -> None: ...
    def build_started(self, workspace_id: str, build_id: str) -> None: ...


class NoActivity:
    def tool_started(self, call_id: str, tool_name: str) -> None:
        return None

    def tool_finished(self, call_id: str) -> None:
        return None

    def build_started(self, workspace_id: str, build_id: str) -> None:
        return None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_call_line(tool_name: str, args: Any) -> str:
    """``→ execute {"command": "python3 hello.py"}`` (arguments clipped)."""
    if not args:
        return f"→ {tool_name}"
    rendered = json.dumps(args, ensure_ascii=False) if not isinstance(args, str) else args
    return f"→ {tool_name} {_clip(rendered, MAX_ARGS_CHARS)}"


def _lines(text: str) -> int:
    return len(text.splitlines())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def tool_result_line(part: dict[str, Any]) -> tuple[str, str]:
    """The compact line for a tool-result part and its style, e.g. ``← ok exit 0 · 2 lines``
    or ``← error workspace_stopped: … (remediation: start_workspace)``."""
    result = part.get("result")
    if part.get("is_error"):
        code = part.get("error_code")
        message = result if isinstance(result, str) else json.dumps(result)
        text = f"← error {code}: " if code else "← error: "
        text += _clip(" ".join(str(message).split()), MAX_ERROR_CHARS)
        if part.get("remediation"):
            text += f" (remediation: {part['remediation']})"
        return text, "red"
    if not isinstance(result, dict):
        return ("← ok" if result in (None, "") else f"← ok · {_clip(str(result), 80)}"), "green"
    if result.get("error") and "exit_code" not in result:
        return f"← error: {_clip(str(result['error']), MAX_ERROR_CHARS)}", "red"
    if "exit_code" in result:
        output = str(result.get("output") or "")
        code = result.get("exit_code")
        ok = code == 0 and not result.get("error")
        text = f"← {'ok' if ok else 'failed'} exit {code} · {_plural(_lines(output), 'line')}"
        if result.get("truncated"):
            text += " (truncated)"
        if result.get("error"):
            text += f" · {_clip(str(result['error']), 120)}"
        return text, "green" if ok else "yellow"
    if "workspace_name" in result:
        status = result.get("status") or ("created" if result.get("created") else "")
        return f"← ok workspace {result['workspace_name']} {status}".rstrip(), "green"
    if isinstance(result.get("content"), str):
        return f"← ok · {_plural(_lines(result['content']), 'line')}", "green"
    if "bytes_written" in result:
        return f"← ok · {_plural(int(result['bytes_written']), 'byte')} written", "green"
    for key, value in result.items():
        if isinstance(value, list):
            noun = key[:-1] if len(value) == 1 and key.endswith("s") else key
            return f"← ok · {len(value)} {noun}", "green"
    return "← ok", "green"


def compaction_line(data: dict[str, Any]) -> str:
    """The line the CLI prints for a ``compaction`` stream event."""
    if data.get("kind") == "clear":
        return "⟲ context cleared: earlier messages are no longer sent to the model"
    before = data.get("tokens_before")
    size = f" (~{before} tokens)" if before else ""
    return (
        f"⟲ chat compacted{size}: messages up to #{data.get('through_seq')} summarised "
        f"({data.get('reason')})"
    )


def message_text(parts: list[dict[str, Any]]) -> str:
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


class ChatRenderer:
    """Renders one chat's events; see the module docstring. ``reply`` is the latest
    assistant text, ``tool_calls`` the number of calls shown."""

    def __init__(
        self, writer: Writer, *, activity: Activity | None = None, show_user: bool = True
    ) -> None:
        self._w = writer
        self._activity = activity or NoActivity()
        self._show_user = show_user
        self._mid_line = False
        self._streamed = ""  # text streamed since the last persisted assistant message
        self._calls_shown: set[str] = set()
        self._results_shown: set[str] = set()
        self.reply = ""
        self.tool_calls = 0

    # --- output primitives --------------------------------------------------------------

    def _text(self, text: str) -> None:
        if text:
            self._w.write(text)
            self._mid_line = not text.endswith("\n")

    def line(self, text: str, style: str = "") -> None:
        """A whole line (after ending a partly written one)."""
        self.end_line()
        self._w.write(text + "\n", style)

    def end_line(self) -> None:
        if self._mid_line:
            self._w.write("\n")
            self._mid_line = False

    # --- events -------------------------------------------------------------------------

    def event(self, event: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if event == "message_part":
            self._part(data)
        elif event == "message":
            self.message(data)
        elif event == "status":
            if data.get("build_id") and data.get("workspace_id"):
                self._activity.build_started(str(data["workspace_id"]), str(data["build_id"]))
        elif event == "error":
            code = f" [{data['code']}]" if data.get("code") else ""
            self.line(f"error: {data.get('message')}{code}", "red")
        elif event == "compaction":
            self.line(compaction_line(data), "cyan")
        elif event == "retry":
            self.line(
                f"↻ model provider failed ({data.get('error')}); retry "
                f"{data.get('attempt')}/{data.get('max_attempts')} in {data.get('delay_s')}s",
                "yellow",
            )

    def _part(self, data: dict[str, Any]) -> None:
        kind = data.get("kind")
        if kind == "text":
            delta = str(data.get("delta") or "")
            self._streamed += delta
            self._text(delta)
        elif kind == "tool-call":
            self._call(str(data.get("tool_call_id")), str(data.get("tool_name")), data.get("args"))
        elif kind == "tool-result":
            self._result(str(data.get("tool_call_id")), data)

    def message(self, data: dict[str, Any]) -> None:
        """A persisted message (from the stream or the history)."""
        parts = [p for p in data.get("parts") or [] if isinstance(p, dict)]
        role = data.get("role")
        if data.get("visibility") == "model":
            return
        if role == "user":
            text = message_text(parts)
            images = [p for p in parts if p.get("type") == "image"]
            if images:  # never the bytes: what and how large
                sizes = ", ".join(
                    f"{p.get('media_type')} {len(str(p.get('data', ''))) * 3 // 4 // 1024} KiB"
                    for p in images
                )
                text = f"{text} [image: {sizes}]".strip()
            if self._show_user and text:
                self.line(f"› {text}", "bold")
            return
        if role == "system":  # a notice for the user, e.g. a workspace MCP server failed
            text = message_text(parts)
            if text:
                self.line(f"! {text}", "yellow")
            return
        if role == "assistant":
            text = message_text(parts)
            if text:
                if self._streamed and text.startswith(self._streamed):
                    self._text(text[len(self._streamed) :])
                elif not self._streamed:
                    self._text(text)
                # else: a reconnect lost deltas; what was shown stays, no repeat
                self.reply = text
                self.end_line()
            self._streamed = ""
            for p in parts:
                if p.get("type") == "tool-call":
                    self._call(str(p.get("tool_call_id")), str(p.get("tool_name")), p.get("args"))
        elif role == "tool":
            for p in parts:
                if p.get("type") == "tool-result":
                    self._result(str(p.get("tool_call_id")), p)

    def _call(self, call_id: str, tool_name: str, args: Any) -> None:
        if call_id in self._calls_shown:
            return
        self._calls_shown.add(call_id)
        self.tool_calls += 1
        self.line(tool_call_line(tool_name, args), "cyan")
        if call_id not in self._results_shown:
            self._activity.tool_started(call_id, tool_name)

    def _result(self, call_id: str, part: dict[str, Any]) -> None:
        if call_id in self._results_shown:
            return
        self._results_shown.add(call_id)
        self._activity.tool_finished(call_id)
        text, style = tool_result_line(part)
        self.line(f"  {text}", style)
