"""Raw HTTP/1.1 on a socket, for the tests that send what no client library would: a
garbage request line, a head over the bound, a head that never ends, pipelined requests.
Every read has a deadline; a server that neither answers nor closes fails the test."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEADLINE_S = 10.0  # generous: a parser that hangs on the attack never answers at all


@dataclass
class Answer:
    """What came back before the server closed the connection (or the deadline passed)."""

    data: bytes
    closed: bool  # the server closed the connection (EOF) within the deadline

    @property
    def statuses(self) -> list[int]:
        """The status of every response in ``data``, in order."""
        return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", self.data)]

    @property
    def refused(self) -> bool:
        """Refused while the client was still sending: a 400, or nothing at all — a server
        that closes with unread bytes resets the connection, and the reset may discard
        its 400 before the client reads it."""
        return self.statuses in ([], [400])


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _read_all(reader: asyncio.StreamReader, *, until_responses: int | None) -> Answer:
    data = b""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    while True:
        remaining = end - loop.time()
        if remaining <= 0:
            return Answer(data, closed=False)
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except TimeoutError:
            return Answer(data, closed=False)
        except ConnectionError:
            return Answer(data, closed=True)
        if not chunk:
            return Answer(data, closed=True)
        data += chunk
        if until_responses is not None:
            if len(Answer(data, closed=False).statuses) >= until_responses:
                return Answer(data, closed=False)


async def exchange(url: str, raw: bytes, *, until_responses: int | None = None) -> Answer:
    """Send ``raw`` at once; read until the server closes (or ``until_responses`` status
    lines arrived, for a connection that stays open)."""
    reader, writer = await _open(url)
    try:
        writer.write(raw)
        await writer.drain()
        return await _read_all(reader, until_responses=until_responses)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def endless_head(url: str, *, piece: int = 4096, limit: int = 4 * 1024 * 1024) -> Answer:
    """Open a request whose one header never ends: send ``piece`` bytes at a time (up to
    ``limit``) while reading what the server answers. Returns once the server closed."""
    reader, writer = await _open(url)

    async def feed() -> None:
        writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < limit:
                writer.write(b"a" * piece)
                await writer.drain()
                sent += piece
                await asyncio.sleep(0)  # let the server read between pieces

    sender = asyncio.create_task(feed())
    try:
        return await _read_all(reader, until_responses=None)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
