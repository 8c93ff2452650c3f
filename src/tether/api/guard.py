"""The request guard: what no route should ever have to handle, refused before routing.

An ASGI middleware around the whole HTTP API. It answers with a typed error (the same
``{code, message, details}`` body as every other error) when

* the body is larger than ``Settings.api_max_body_bytes`` → 413 ``payload_too_large``; on
  the routes that take a chat message only the base64 data of image parts may take it past
  that, up to ``chat_message_max_body_bytes`` (chatd/images.py bounds each image)
  (from ``Content-Length`` at once, else while reading: the body is never buffered past the
  limit; the rest, up to :data:`DRAIN_MAX_BYTES`, is read and dropped so the client gets
  the answer);
* a JSON body is not JSON the rest of tether can store and send back → 400
  ``invalid_input``: malformed or not UTF-8, nested deeper than :data:`MAX_JSON_DEPTH`,
  ``NaN``/``Infinity`` or a float that overflows to infinity, an integer outside the
  signed 64-bit range (what SQLite and PostgreSQL columns hold), or a string (key or
  value) with a lone surrogate or a NUL character (which UTF-8 and PostgreSQL refuse);
* the path or the query string holds a NUL character or a lone surrogate → 400.

Everything else is left to the routes and their pydantic models. WebSocket and lifespan
scopes pass through untouched.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.errors import InvalidInput, PayloadTooLarge, TetherError
from tether.plaindata import clean_text, plain_problem

MAX_JSON_DEPTH = 64
DRAIN_MAX_BYTES = 64 * 1024 * 1024


# the routes that take a chat message (create, send, edit): images make their bodies large
MESSAGE_ROUTES = re.compile(r"^/api/v1/chats(/[0-9a-fA-F-]{36}/messages(/[0-9a-fA-F-]{36})?)?/?$")


class RequestGuard:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, message_max_body_bytes: int | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.message_max_body_bytes = message_max_body_bytes or max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_target(scope)
            body = await self._read_body(scope, receive)
            parsed = check_json(body) if body and _is_json(scope) else None
            if len(body) > self.max_body_bytes and (
                len(body) - _image_bytes(parsed) > self.max_body_bytes
            ):
                raise _too_large(self.max_body_bytes)  # only image data may pass the limit
        except TetherError as exc:
            await _reply(send, exc)
            return
        await self.app(scope, _replay(body, receive), send)

    def limit_of(self, scope: Scope) -> int:
        """``message_max_body_bytes`` for the message routes' writes, else the default."""
        if scope.get("method") in ("POST", "PATCH") and MESSAGE_ROUTES.match(scope.get("path", "")):
            return max(self.max_body_bytes, self.message_max_body_bytes)
        return self.max_body_bytes

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.limit_of(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain(receive, int(declared))
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_MAX_BYTES)
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _drain(receive: Receive, declared: int) -> None:
    """Read and drop the rest of a refused body, so a client that sends its whole body
    before reading the answer sees the 413 rather than a reset connection. Bodies past
    :data:`DRAIN_MAX_BYTES` are not read: the answer closes the connection instead."""
    if declared > DRAIN_MAX_BYTES:
        return
    size = 0
    while size <= DRAIN_MAX_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _image_bytes(parsed: Any) -> int:
    """The characters of image data in a message body (``content`` image parts)."""
    content = parsed.get("content") if isinstance(parsed, dict) else None
    if not isinstance(content, list):
        return 0
    return sum(
        len(p["data"])
        for p in content
        if isinstance(p, dict) and p.get("type") == "image" and isinstance(p.get("data"), str)
    )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than the limit of {limit} bytes", limit=limit
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


def _is_json(scope: Scope) -> bool:
    # FastAPI reads a body without Content-Type as JSON too.
    content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return not content_type or content_type == "application/json" or content_type.endswith("+json")


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read above as one message, then the server's own messages (a streaming
    response waits on them for the client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, exc: TetherError) -> None:
    body = json.dumps(exc.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the rest of an oversized body is not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- checks -----------------------------------------------------------------------------


def check_target(scope: Scope) -> None:
    """Refuse NUL characters and lone surrogates in the decoded path and query string."""
    path = scope.get("path", "")
    if not clean_text(path):
        raise InvalidInput("the URL path holds a NUL character or invalid text", field="path")
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        if not (clean_text(key) and clean_text(value)):
            raise InvalidInput(
                "the query string holds a NUL character or invalid text", field="query"
            )


def check_json(body: bytes) -> Any:
    """Parse a JSON body and return it, or raise :class:`InvalidInput` (see module doc)."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except _NonFinite:
        raise InvalidInput("the body holds NaN or Infinity; numbers must be finite") from None
    except RecursionError:
        raise _too_deep() from None
    except UnicodeDecodeError:
        raise InvalidInput("the body is not valid UTF-8") from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python parses
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    problem = plain_problem(data, max_depth=MAX_JSON_DEPTH)
    if problem is not None:
        raise InvalidInput(f"the body cannot be accepted: {problem}")
    return data


class _NonFinite(ValueError):
    pass


def _no_constant(_: str) -> Any:
    raise _NonFinite


def _too_deep() -> InvalidInput:
    return InvalidInput(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
