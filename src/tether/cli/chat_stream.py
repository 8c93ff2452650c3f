"""Following a chat's stream from the CLI: reconnects, terminal output, tool progress.

:func:`follow_events` yields the chat's events and survives dropped connections: it
reconnects with the last event id it received (``Last-Event-ID``), so nothing is lost or
repeated, giving up after ``retries`` failed attempts in a row. :func:`stream_chat` drives a
:class:`~tether.cli.chat_render.ChatRenderer` (or prints NDJSON with ``--json``) until the
chat is idle again and returns the chat's final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.text import Text

from tether.cancellation import cancel_and_wait
from tether.cli.chat_render import ChatRenderer
from tether.cli.common import CliError
from tether.cli.output import Output, to_jsonable
from tether.sdk import ApiError, TetherClient
from tether.sdk.chats import Chat, ChatEvent, ChatsAPI

IDLE = frozenset({"waiting", "error"})
BUSY = frozenset({"pending", "running", "interrupting"})
RECONNECT_RETRIES = 5
RECONNECT_MAX_DELAY_S = 5.0
BUILD_LOG_WAIT_S = 15 * 60.0
_BUILD_TOOLS = {"create_workspace": "building workspace", "start_workspace": "starting workspace"}


def _reconnectable(exc: ApiError) -> bool:
    return exc.code in ("server_unreachable", "timeout") or exc.status >= 500


async def follow_events(
    chats: ChatsAPI,
    chat_id: uuid.UUID | str,
    *,
    resume: str | None = None,
    until_idle: bool = True,
    retries: int = RECONNECT_RETRIES,
    base_delay_s: float = 0.5,
) -> AsyncIterator[ChatEvent]:
    """The chat's events from ``resume`` (an event id; None: from the first message). With
    ``until_idle`` it ends after a ``status`` event saying ``waiting`` or ``error``.
    Reconnects on a dropped or failed connection (server down, 5xx, stalled read), waiting
    ``base_delay_s`` doubling up to 5 s; raises :class:`CliError` after ``retries``
    consecutive failures. Other API errors (``not_found`` …) are raised at once."""
    failures = 0
    while True:
        reason = "the server closed the stream"
        try:
            stream = chats.stream(chat_id, resume)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for ev in stream:
                    failures = 0
                    resume = ev.last_event_id or resume
                    yield ev
                    if until_idle and ev.event == "status" and isinstance(ev.data, dict):
                        if ev.data.get("status") in IDLE:
                            return
        except ApiError as exc:
            if not _reconnectable(exc):
                raise
            reason = exc.message
        failures += 1
        if failures > retries:
            raise CliError(
                f"lost the chat stream ({reason}); gave up after {retries} reconnects — "
                f"resume with `tether chat watch {chat_id}`",
                code="stream_lost",
            )
        await asyncio.sleep(min(base_delay_s * 2 ** (failures - 1), RECONNECT_MAX_DELAY_S))


class ConsoleWriter:
    """A :class:`~tether.cli.chat_render.Writer` on a Rich console (never markup)."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str, style: str = "") -> None:
        self._console.print(Text(text, style=style), end="")


class NullWriter:
    def write(self, text: str, style: str = "") -> None:
        return None


@dataclass
class TerminalActivity:
    """Tool progress for people: a spinner while a tool runs (on a terminal; otherwise one
    ``… building workspace`` line for the workspace tools) and the build log of a
    workspace the chat is building. Owns its log-following tasks (:meth:`aclose`)."""

    client: TetherClient
    console: Console
    emit: Callable[[str, str], None] = lambda _text, _style: None
    _running: dict[str, str] = field(default_factory=dict)
    _status: Status | None = None
    _builds: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def tool_started(self, call_id: str, tool_name: str) -> None:
        self._running[call_id] = tool_name
        label = _BUILD_TOOLS.get(tool_name)
        if not self.console.is_terminal:
            if label:
                self.emit(f"  … {label}", "dim")
            return
        text = f"{label}…" if label else f"running {tool_name}…"
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def tool_finished(self, call_id: str) -> None:
        self._running.pop(call_id, None)
        if not self._running:
            self._stop_spinner()

    def build_started(self, workspace_id: str, build_id: str) -> None:
        if build_id in self._builds:
            return
        self._builds.add(build_id)
        task = asyncio.get_running_loop().create_task(self._follow_build(workspace_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow_build(self, workspace_id: str) -> None:
        # Best effort: the build log is a bonus; the tool result says how the build went.
        with contextlib.suppress(ApiError, TimeoutError):
            async with asyncio.timeout(BUILD_LOG_WAIT_S):
                events = self.client.follow_logs(workspace_id)
                async with contextlib.aclosing(events):
                    async for event, data in events:
                        if event == "log" and isinstance(data, dict):
                            self.emit(f"  │ {data.get('output', '')}", "dim")

    def _stop_spinner(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    async def aclose(self) -> None:
        self._stop_spinner()
        await cancel_and_wait(*self._tasks)


@dataclass
class StreamOutcome:
    chat: Chat
    renderer: ChatRenderer
    events: int

    def summary(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "chat": to_jsonable(self.chat),
            "status": self.chat.status,
            "last_error": self.chat.last_error,
            "last_error_code": self.chat.last_error_code,
            "reply": self.renderer.reply,
            "tool_calls": self.renderer.tool_calls,
            "events": self.events,
        }


def ndjson(data: Any) -> str:
    return json.dumps(to_jsonable(data), default=str, ensure_ascii=False)


def event_json(ev: ChatEvent) -> str:
    return ndjson({"event": ev.event, "id": ev.id, "data": ev.data})


def new_renderer(
    client: TetherClient, out: Output, *, show_user: bool
) -> tuple[ChatRenderer, TerminalActivity]:
    if out.json_mode:
        return ChatRenderer(NullWriter(), show_user=show_user), TerminalActivity(client, out.err)
    activity = TerminalActivity(client, out.out)
    renderer = ChatRenderer(ConsoleWriter(out.out), activity=activity, show_user=show_user)
    activity.emit = renderer.line
    return renderer, activity


async def stream_chat(
    client: TetherClient,
    out: Output,
    chat_id: uuid.UUID,
    renderer: ChatRenderer,
    activity: TerminalActivity,
    *,
    resume: str | None,
    until_idle: bool = True,
) -> StreamOutcome:
    """Render (or print as NDJSON) the chat's events until it is idle again; the outcome
    carries the chat as it is afterwards."""
    chats = ChatsAPI(client)
    count = 0
    try:
        async for ev in follow_events(chats, chat_id, resume=resume, until_idle=until_idle):
            count += 1
            if out.json_mode:
                print(event_json(ev), flush=True)
            renderer.event(ev.event, ev.data)
    finally:
        await activity.aclose()
        renderer.end_line()
    return StreamOutcome(await chats.get(chat_id), renderer, count)
