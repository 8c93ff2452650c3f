"""A small WebSocket client (RFC 6455) for the agent's session, over TCP, TLS or a unix socket.

Why not the ``websockets`` package: the agent starts once per workspace build and then idles,
and that package (with the ``importlib.metadata`` it pulls in) was about as much start-up
import time as asyncio itself and ~3 MB of an idle agent's memory. The session needs little:
one connection, text frames both ways, answers to pings, a clean close. This is that:

* the opening handshake checks ``101`` and ``Sec-WebSocket-Accept``; any other status raises
  :class:`InvalidStatus` with it (the session waits longer after a 401/403);
* frames from the agent are masked; server frames may be fragmented (reassembled up to
  ``max_size``, default 1 MiB as in ``websockets``), control frames are answered (ping → pong,
  close → close) and a malformed or oversized frame closes the connection with
  :class:`ProtocolError`;
* a closed connection raises :class:`ConnectionClosed` from :meth:`recv` and :meth:`send`.

Every wait is bounded by the caller (``open_timeout`` here, the session's silence timeout on
``recv``); :meth:`close` waits at most ``close_timeout`` for the server's close frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from urllib.parse import SplitResult, urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16 * 1024
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10


class WebSocketError(Exception):
    """The WebSocket connection failed."""


class InvalidStatus(WebSocketError):
    """The server answered the opening handshake with another status than 101."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"server rejected the WebSocket connection: HTTP {status_code}")
        self.status_code = status_code


class ProtocolError(WebSocketError):
    """The server broke the WebSocket protocol."""


class ConnectionClosed(WebSocketError):
    """The connection is closed."""


class ClientConnection:
    """One open WebSocket connection; use :func:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_size: int,
        close_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_size = max_size
        self._close_timeout = close_timeout
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._close_received = asyncio.Event()
        self._reading = False  # a recv() is waiting for frames

    async def send(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""
        if self._closed:
            raise ConnectionClosed("the connection is closed")
        if isinstance(message, str):
            await self._send_frame(_OP_TEXT, message.encode())
        else:
            await self._send_frame(_OP_BINARY, message)

    async def recv(self) -> str | bytes:
        """The next message (text as ``str``); answers pings on the way."""
        self._reading = True
        try:
            return await self._recv()
        finally:
            self._reading = False

    async def _recv(self) -> str | bytes:
        parts: list[bytes] = []
        kind: int | None = None
        size = 0
        while True:
            fin, opcode, payload = await self._read_frame()
            if opcode >= _OP_CLOSE:
                await self._control(opcode, payload)
                continue
            if opcode == _OP_CONT:
                if kind is None:
                    raise await self._fail("continuation frame without a message")
            elif kind is not None:
                raise await self._fail("new message before the last one ended")
            else:
                kind = opcode
            size += len(payload)
            if size > self._max_size:
                raise await self._fail(f"message over {self._max_size} bytes", code=1009)
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if kind == _OP_TEXT:
                    try:
                        return data.decode()
                    except UnicodeDecodeError:
                        raise await self._fail("text message is not UTF-8", code=1007) from None
                return data

    async def close(self, code: int = 1000) -> None:
        """Send a close frame, wait (bounded) for the server's, then drop the connection."""
        if not self._closed:
            with contextlib.suppress(OSError, ConnectionClosed):
                await self._send_frame(_OP_CLOSE, struct.pack("!H", code))
            self._closed = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._close_timeout):
                    if self._reading:  # that recv() sees the server's close frame
                        await self._close_received.wait()
                    while not self._close_received.is_set():
                        _, opcode, _ = await self._read_frame()
                        if opcode == _OP_CLOSE:
                            self._close_received.set()
        self._abort()

    # --- frames -----------------------------------------------------------------------------

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        key = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
            length, "little"
        )
        async with self._write_lock:
            try:
                self._writer.write(head + mask + masked)
                await self._writer.drain()
            except OSError as exc:
                self._closed = True
                raise ConnectionClosed(f"connection lost: {exc}") from exc

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        try:
            b0, b1 = await self._reader.readexactly(2)
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
            if b1 & 0x80:
                raise await self._fail("the server masked a frame")
            if b0 & 0x70:
                raise await self._fail("reserved bits set")
            opcode = b0 & 0x0F
            fin = bool(b0 & 0x80)
            if opcode not in (_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG):
                raise await self._fail(f"unknown opcode {opcode}")
            if opcode >= _OP_CLOSE and (length > 125 or not fin):
                raise await self._fail("bad control frame")
            if length > self._max_size:
                raise await self._fail(f"frame over {self._max_size} bytes", code=1009)
            payload = await self._reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, OSError) as exc:
            self._closed = True
            raise ConnectionClosed("the server closed the connection") from exc
        return fin, opcode, payload

    async def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_PING:
            await self._send_frame(_OP_PONG, payload)
        elif opcode == _OP_CLOSE:
            self._close_received.set()
            if not self._closed:
                with contextlib.suppress(OSError, ConnectionClosed):
                    await self._send_frame(_OP_CLOSE, payload[:2])
                self._closed = True
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            raise ConnectionClosed(f"the server closed the connection (code {code})")

    async def _fail(self, why: str, code: int = 1002) -> ProtocolError:
        with contextlib.suppress(OSError, ConnectionClosed):
            await self._send_frame(_OP_CLOSE, struct.pack("!H", code))
        self._closed = True
        self._abort()
        return ProtocolError(why)

    def _abort(self) -> None:
        self._closed = True
        self._writer.close()


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    additional_headers: dict[str, str] | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 1.0,
    unix_path: str | None = None,
    max_size: int = 1 << 20,
) -> AsyncIterator[ClientConnection]:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``; through ``unix_path`` when
    given, with ``url``'s host as the Host header), closed when the block exits."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise WebSocketError(f"not a WebSocket URL: {url}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    async with asyncio.timeout(open_timeout):
        ssl_context = None
        if secure:
            import ssl  # only agents that talk TLS need it

            ssl_context = ssl.create_default_context()
        if unix_path is not None:
            reader, writer = await asyncio.open_unix_connection(
                unix_path,
                ssl=ssl_context,
                server_hostname=parts.hostname if secure else None,
                limit=_MAX_HEAD,
            )
        else:
            reader, writer = await asyncio.open_connection(
                parts.hostname, port, ssl=ssl_context, limit=_MAX_HEAD
            )
        try:
            await _handshake(reader, writer, parts, port, additional_headers or {})
        except BaseException:
            writer.close()
            raise
    ws = ClientConnection(reader, writer, max_size=max_size, close_timeout=close_timeout)
    try:
        yield ws
    finally:
        await ws.close()


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parts: SplitResult,
    port: int,
    headers: dict[str, str],
) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    default_port = 443 if parts.scheme == "wss" else 80
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port != default_port:
        host = f"{host}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError("handshake response headers too large") from None
    except asyncio.IncompleteReadError:
        raise ConnectionClosed("the server closed the connection during the handshake") from None
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/1.") or not fields[1].isdigit():
        raise ProtocolError(f"malformed handshake response: {status_line[:80]!r}")
    status = int(fields[1])
    if status != 101:
        raise InvalidStatus(status)
    got: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        got[name.strip().lower()] = value.strip()
    expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    if got.get("upgrade", "").lower() != "websocket" or got.get("sec-websocket-accept") != expected:
        raise ProtocolError("the server did not accept the WebSocket upgrade")
