"""Server-Sent Events helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi.responses import StreamingResponse

_dumps = json.JSONEncoder(default=str, separators=(",", ":")).encode


def sse_event(data: Any, *, event: str, id: str | int | None = None) -> str:
    """One event (compact JSON has no raw newline, so the payload is one ``data:`` line)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {_dumps(data)}\n\n"


PING_COMMENT = ": ping\n\n"


def sse_chunk(items: Iterable[tuple[str | None, Any, str | None]]) -> str:
    """Several events (``(event, data, id)``; ``event`` None: a keep-alive comment) as one
    chunk, so a burst goes out in one write."""
    return "".join(
        PING_COMMENT if event is None else sse_event(data, event=event, id=id)
        for event, data, id in items
    )


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    """An SSE response. Routes pass ``guard.stream(request, events)`` (a
    :class:`tether.api.revocation.StreamGuard`), so the stream ends when the request's API
    token stops authenticating."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# The OpenAPI ``responses`` entry of a route that can answer 200 with an event stream.
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON, or with a streaming option a stream of server-sent events",
        "content": {"text/event-stream": {}},
    }
}
