"""A Server-Sent Events parser (the WHATWG event-stream rules), used for build logs and chats.

Feed it lines (without their line terminators); it yields one :class:`SseEvent` per blank-line
terminated block that carried data. Comments (``:``) are ignored, ``data:`` lines are joined
with ``\\n``, ``id:`` persists across events as the last event id (what a reconnect sends as
``Last-Event-ID``), ``retry:`` is kept when it is an integer. An unterminated block at the end
of the stream is dropped, as the spec requires.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data decoded as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.data)


class SseDecoder:
    """Incremental decoder: call :meth:`feed` once per line, it returns an event or None."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:  # the spec ignores ids containing NUL
                self.last_event_id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        # any other field name is ignored, per the spec
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return SseEvent(
            event=event or "message", data="\n".join(data), id=self.last_event_id, retry=retry
        )


async def iter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """Events from an async iterable of lines (e.g. ``httpx.Response.aiter_lines()``)."""
    decoder = SseDecoder()
    async for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event
