"""The agent's HTTP/1.1 server: a small asyncio server for the agent's own API only.

Why not uvicorn + Starlette: the agent is one per workspace and idles most of its life, so its
footprint counts (the web stack and its imports were ~8 MB of an idle agent's RSS), and its
API is a dozen JSON routes plus one streamed response. This module is that and no more:

* requests: ``METHOD /path?query HTTP/1.x``, headers, a ``Content-Length`` or chunked body;
  keep-alive by default on HTTP/1.1; ``Expect: 100-continue`` is answered;
* responses: a JSON body with ``Content-Length``, or a chunked stream of byte chunks.

The agent is on the untrusted side (anything in the workspace can connect to its socket), so
every input is bounded: the request line and headers (:data:`MAX_HEADER_BYTES`, at most
:data:`MAX_HEADERS` lines), the body (:data:`MAX_BODY_BYTES` → 413), and time — the head of a
request must arrive within ``header_timeout_s`` of its first byte being awaited, a body within
``body_timeout_s`` (slowloris), and an idle keep-alive connection is closed after
``keepalive_s``. Malformed requests get a 400 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

log = logging.getLogger("tether.agent")

MAX_HEADER_BYTES = 16 * 1024  # request line + headers (uvicorn's h11 default is 16 KiB too)
MAX_HEADERS = 100
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_CHUNK_LINE = 1024

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None  # sent chunked instead of ``body``


Handler = Callable[[Request], Awaitable[Response]]


def json_response(data: object, status: int = 200) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"code": code, "message": message}, status)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_s: float = 5.0  # uvicorn's default keep-alive timeout
    max_body_bytes: int = MAX_BODY_BYTES


class HttpServer:
    """Serves ``handler`` on a listening socket until :meth:`close`."""

    def __init__(self, handler: Handler, limits: Limits | None = None) -> None:
        self._handler = handler
        self._limits = limits or Limits()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._sockets: dict[asyncio.Task[None], socket.socket] = {}

    async def start(self, sock: socket.socket) -> None:
        if sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(
                self._on_client, sock=sock, limit=MAX_HEADER_BYTES
            )
        else:
            self._server = await asyncio.start_server(
                self._on_client, sock=sock, limit=MAX_HEADER_BYTES
            )

    @property
    def connections(self) -> int:
        return len(self._conns)

    def sockets(self) -> list[socket.socket]:
        """The sockets of the open connections (for checks of their options)."""
        return list(self._sockets.values())

    async def close(self, timeout_s: float) -> None:
        """Stop accepting, then give open requests ``timeout_s`` before cancelling them."""
        if self._server is not None:
            self._server.close()
        conns = list(self._conns)
        if conns:
            _, pending = await asyncio.wait(conns, timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self._sockets[task] = writer.get_extra_info("socket")
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self._conns.discard(task)
            self._sockets.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self._limits
        served = False
        while True:
            # A new connection has header_timeout_s for its first request; an idle keep-alive
            # connection waits keepalive_s for the next one (then it is closed, quietly).
            try:
                async with asyncio.timeout(
                    limits.keepalive_s if served else limits.header_timeout_s
                ):
                    first_byte = await reader.read(1)
            except TimeoutError:
                return
            if not first_byte:
                return
            served = True
            try:
                async with asyncio.timeout(limits.header_timeout_s):
                    head = first_byte + await _read_head(reader)
                request, keep_alive, length, chunked = _parse_head(head, limits.max_body_bytes)
                if request.headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                async with asyncio.timeout(limits.body_timeout_s):
                    if chunked:
                        request.body = await _read_chunked(reader, limits.max_body_bytes)
                    elif length:
                        request.body = await reader.readexactly(length)
            except _BadRequest as exc:
                await _write(writer, error_response(exc.status, _code(exc.status), exc.message))
                await _linger(reader, writer)
                return
            except TimeoutError:
                await _write(writer, error_response(408, "timeout", "request not received in time"))
                await _linger(reader, writer)
                return
            response = await self._handler(request)
            await _write(
                writer, response, keep_alive=keep_alive, head_only=request.method == "HEAD"
            )
            if not keep_alive:
                return


# After an error answer the client may still be sending (a slow head, a refused body). Closing
# with unread input makes the kernel send RST, which can destroy the answer before the client
# reads it; so the server half-closes, then discards input until EOF — bounded in time and
# bytes (the "lingering close" of HTTP servers).
LINGER_S = 2.0
LINGER_MAX_BYTES = 1 << 20


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        if writer.can_write_eof():
            writer.write_eof()
        discarded = 0
        async with asyncio.timeout(LINGER_S):
            while discarded <= LINGER_MAX_BYTES:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                discarded += len(chunk)
    except (TimeoutError, ConnectionError, OSError):
        return


def _code(status: int) -> str:
    return {413: "payload_too_large", 431: "headers_too_large"}.get(status, "bad_request")


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "request line and headers are too large") from None
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise _BadRequest(400, "incomplete request") from None
        raise


def _parse_head(head: bytes, max_body: int) -> tuple[Request, bool, int, bool]:
    lines = head[:-4].split(b"\r\n")
    if len(lines) - 1 > MAX_HEADERS:
        raise _BadRequest(431, "too many headers")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN_CHARS:
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _BadRequest(400, "unsupported HTTP version")
    if not target.startswith(b"/"):
        raise _BadRequest(400, "the request target must be a path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or not set(name) <= _TOKEN_CHARS:
            raise _BadRequest(400, "malformed header line")
        headers[name.decode("ascii").lower()] = value.strip(b" \t").decode("latin-1")
    raw_path, _, raw_query = target.decode("latin-1").partition("?")
    request = Request(
        method=method.decode("ascii"),
        path=unquote(raw_path),
        query=dict(parse_qsl(raw_query, keep_blank_values=True)),
        headers=headers,
    )
    connection = headers.get("connection", "").lower()
    if version == b"HTTP/1.1":
        keep_alive = "close" not in connection
    else:
        keep_alive = "keep-alive" in connection
    chunked = False
    length = 0
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if encoding.lower() != "chunked" or "content-length" in headers:
            raise _BadRequest(400, "unsupported transfer encoding")
        chunked = True
    elif "content-length" in headers:
        raw = headers["content-length"]
        if not raw.isdigit() or len(raw) > 12:
            raise _BadRequest(400, "malformed Content-Length")
        length = int(raw)
        if length > max_body:
            raise _BadRequest(413, f"request body is over {max_body} bytes")
    return request, keep_alive, length, chunked


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(400, "malformed chunk") from None
        if len(line) > MAX_CHUNK_LINE:
            raise _BadRequest(400, "malformed chunk")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(400, "malformed chunk") from None
        if size < 0 or len(body) + size > max_body:
            raise _BadRequest(413, f"request body is over {max_body} bytes")
        if size == 0:
            while True:  # trailers, up to the empty line
                try:
                    trailer = await reader.readuntil(b"\r\n")
                except asyncio.LimitOverrunError:
                    raise _BadRequest(400, "malformed chunk trailer") from None
                if len(trailer) > MAX_CHUNK_LINE:
                    raise _BadRequest(400, "malformed chunk trailer")
                if trailer == b"\r\n":
                    return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadRequest(400, "malformed chunk")


async def _write(
    writer: asyncio.StreamWriter,
    response: Response,
    *,
    keep_alive: bool = False,
    head_only: bool = False,
) -> None:
    reason = _REASONS.get(response.status, "")
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"content-type: {response.content_type}",
        "connection: " + ("keep-alive" if keep_alive else "close"),
    ]
    if response.stream is None:
        head.append(f"content-length: {len(response.body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        writer.write(data if head_only else data + response.body)
        await writer.drain()
        return
    head.append("transfer-encoding: chunked")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    stream = response.stream
    try:
        if not head_only:
            async for chunk in stream:
                if chunk:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
        await writer.drain()
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
