"""Structured logs: the ids of the work at hand in context variables, and a JSON-lines
formatter (``TETHER_LOG_FORMAT=json``) that writes them with every record.

The ids (``chat_id``, ``workspace_id``, ``build_id``, ``agent_id``, ``request_id``) are bound
where the work starts — an API request (:class:`RequestIds`), a chat turn, an agent session,
a build — and inherited by everything that task awaits or spawns, so one turn can be
followed across the API, the chat worker, the dial and the agent session by ``chat_id`` /
``agent_id``.

Secrets never reach a record on purpose; as a second line, the formatter masks anything
shaped like a tether credential (``tt_…`` user tokens, ``agt_…`` agent tokens, bearer
headers) before it writes a line.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.ids import new_id

LOG_IDS = ("request_id", "chat_id", "workspace_id", "build_id", "agent_id")

_ids: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "tether_log_ids", default=None
)

# user tokens (tt_), agent tokens (agt_), any other prefixed url-safe secret, and bearer values
_SECRET = re.compile(r"\b[a-z]{2,5}_[A-Za-z0-9_-]{32,}|(?i:bearer)\s+\S+")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_PATH_IDS = re.compile(r"/api/v1/(chats|workspaces)/([0-9a-fA-F-]{36})(?:/|$)")


def log_ids() -> dict[str, str]:
    """The ids bound in the current context."""
    return dict(_ids.get() or {})


def bind_log_ids(**ids: uuid.UUID | str | None) -> None:
    """Add ``ids`` to the current context (the task and what it spawns from now on)."""
    merged = dict(_ids.get() or {})
    merged.update({k: str(v) for k, v in ids.items() if v is not None})
    _ids.set(merged)


@contextlib.contextmanager
def log_context(**ids: uuid.UUID | str | None) -> Iterator[None]:
    """Bind ``ids`` for a block, restoring the previous ones after it."""
    merged = dict(_ids.get() or {})
    merged.update({k: str(v) for k, v in ids.items() if v is not None})
    token = _ids.set(merged)
    try:
        yield
    finally:
        _ids.reset(token)


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update(_ids.get() or {})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with secrets masked too."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(fmt: str, *, level: int, stream: TextIO | None = None) -> None:
    """Set up the root logger once at process start (``tether server``, ``tether agent``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RequestIds:
    """ASGI middleware: a request id per HTTP request and websocket (the caller's
    ``X-Request-Id`` when well-formed, else a new one), echoed in the response, bound for
    the logs with the chat or workspace id of the path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or new_id().hex
        ids = {"request_id": request_id}
        match = _PATH_IDS.match(scope.get("path", ""))
        if match:
            ids["chat_id" if match.group(1) == "chats" else "workspace_id"] = match.group(2)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        with log_context(**ids):
            await self.app(scope, receive, send_with_id)
