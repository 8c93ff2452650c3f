"""The agent's WebSocket client (tether/agent/wsclient.py) against a real ``websockets``
server on loopback and on a unix socket, and against a raw socket that breaks the protocol
(the server side of the session is outside the sandbox, but a relay or a proxy in between
must not be able to crash or hang the agent)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from tether.agent.wsclient import (
    ClientConnection,
    ConnectionClosed,
    InvalidStatus,
    ProtocolError,
    connect,
)

DEADLINE_S = 10.0


@contextlib.asynccontextmanager
async def ws_server(
    handler: Callable[[ServerConnection], Awaitable[None]], **kwargs: object
) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:  # type: ignore[arg-type]
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/api/v1/agent/session"


async def test_text_both_ways_headers_and_server_pings() -> None:
    seen: dict[str, object] = {}

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["auth"] = ws.request.headers.get("Authorization")
        seen["path"] = ws.request.path
        await asyncio.wait_for(ws.ping(), DEADLINE_S)  # answered by the client's pong
        async for message in ws:
            await ws.send(f"echo {message}")

    async with ws_server(handler) as url:
        async with connect(url, additional_headers={"Authorization": "Bearer t"}) as ws:
            for text in ("hello", "é" * 50, "x" * 70_000):
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), DEADLINE_S) == f"echo {text}"
    assert seen == {"auth": "Bearer t", "path": "/api/v1/agent/session"}


async def test_fragmented_messages_are_reassembled() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["frag", "mented"])  # an iterable is sent as fragments
        await ws.wait_closed()

    async with ws_server(handler) as url, connect(url) as ws:
        assert await asyncio.wait_for(ws.recv(), DEADLINE_S) == "fragmented"


async def test_unix_socket_and_server_close(tmp_path: Path) -> None:
    from websockets.asyncio.server import unix_serve

    async def handler(ws: ServerConnection) -> None:
        await ws.send("bye")
        await ws.close(1001)

    path = str(tmp_path / "s.sock")
    async with unix_serve(handler, path):
        async with connect("ws://tether/api/v1/agent/session", unix_path=path) as ws:
            assert await asyncio.wait_for(ws.recv(), DEADLINE_S) == "bye"
            with pytest.raises(ConnectionClosed, match="1001"):
                await asyncio.wait_for(ws.recv(), DEADLINE_S)
            with pytest.raises(ConnectionClosed):
                await ws.send("late")


async def test_rejected_handshake_raises_invalid_status() -> None:
    def reject(conn: ServerConnection, request: object) -> Response:
        return Response(401, "Unauthorized", Headers(), b"no")

    async def handler(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    async with ws_server(handler, process_request=reject) as url:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
    assert info.value.status_code == 401


async def test_oversized_message_is_refused() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("x" * 2000)
        await ws.wait_closed()

    async with ws_server(handler) as url, connect(url, max_size=1000) as ws:
        with pytest.raises(ProtocolError, match="over 1000 bytes"):
            await asyncio.wait_for(ws.recv(), DEADLINE_S)


# --- a raw server that misbehaves -----------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """Reads a request head, sends ``reply`` and keeps the connection open (until closed)."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
            await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()


_UPGRADE_BAD_ACCEPT = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: bm9wZQ==\r\n\r\n"
)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (_UPGRADE_BAD_ACCEPT, ProtocolError),
        (b"garbage\r\n\r\n", ProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", InvalidStatus),
        (b"HTTP/1.1 101 OK\r\nX: " + b"a" * 70_000, ProtocolError),
        (b"HTTP/1.1 101 OK\r\n", TimeoutError),  # a head that never ends: the open timeout
    ],
)
async def test_bad_handshakes_fail_within_the_open_timeout(
    reply: bytes, error: type[BaseException]
) -> None:
    async with raw_server(reply) as url:
        with pytest.raises(error):
            async with connect(url, open_timeout=1.0):
                pass


async def test_masked_or_reserved_server_frames_are_protocol_errors() -> None:
    """Frames the server must never send close the connection instead of being read."""
    for frame in (
        struct.pack("!BB", 0x81, 0x85) + b"mask" + b"hello",  # masked by the server
        struct.pack("!BB", 0xC1, 0x01) + b"x",  # RSV1 without an extension
        struct.pack("!BB", 0x83, 0x00),  # reserved opcode
        struct.pack("!BB", 0x09, 0x00),  # fragmented ping
    ):
        r = asyncio.StreamReader()
        r.feed_data(frame)
        r.feed_eof()
        w = _NullWriter()
        ws = ClientConnection(r, w, max_size=1 << 20, close_timeout=0.1)  # type: ignore[arg-type]
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(ws.recv(), DEADLINE_S)
        assert w.closed


class _NullWriter:
    def __init__(self) -> None:
        self.closed = False
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


async def test_close_while_a_recv_waits_ends_both_within_the_close_timeout() -> None:
    """The session closes its connection while its receiver task still waits in recv():
    the close handshake completes through that recv, which then raises ConnectionClosed."""

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ws_server(handler) as url, connect(url, close_timeout=5.0) as ws:
        receiver = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)  # the receiver is waiting for frames
        began = asyncio.get_running_loop().time()
        await asyncio.wait_for(ws.close(), DEADLINE_S)
        assert asyncio.get_running_loop().time() - began < 5.0
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(receiver, DEADLINE_S)
