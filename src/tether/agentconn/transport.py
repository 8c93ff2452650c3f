"""The HTTP/1.1 transport under every :class:`~tether.agentconn.client.AgentClient`
(issue #12): httpx's request → response seam, without httpcore and anyio underneath.

httpx's own transport (httpcore's pool on anyio, parsed by h11) cost the server about
0.95 ms of CPU per exec round trip and 0.5 ms per small request, measured against a real
agent; this one about half of that. It keeps what an agent needs and nothing else:

* kept-alive connections on asyncio streams (TCP with ``TCP_NODELAY``, or the unix socket
  of a ``unix:<path>`` address), one per request in flight; a connection goes back to
  the idle list only after a complete response that allows keep-alive, and an idle one
  that the agent closed meanwhile is dropped, not used;
* the request head and body in one write;
* the response parsed by httptools (llhttp), streamed to httpx as it arrives.

The agent is untrusted (it runs inside the user's workspace), so every read is bounded:

* the connect, each read and the write by httpx's ``timeout`` of the request (the
  client's deadlines, from Settings);
* the response head by :data:`MAX_HEAD_BYTES`, the body by :data:`MAX_BODY_BYTES`;
* a status line, header or chunk that is not HTTP/1.1 is a protocol error;
* redirects are never followed (the client does not ask for it; this layer only answers).

Failures are httpx's own exceptions, so the client maps them as before: ``ConnectError``
and ``ConnectTimeout`` (nothing was sent), ``WriteError``/``WriteTimeout``,
``ReadError``/``ReadTimeout`` and ``RemoteProtocolError`` (tests:
tests/integration/agent/test_agent_transport.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httptools
import httpx

MAX_HEAD_BYTES = 16 * 1024  # status line + headers (the agent's own request bound too)
MAX_BODY_BYTES = 32 * 1024 * 1024  # a response body (the API's largest request body)
MAX_IDLE = 8  # kept-alive connections per agent client
READ_SIZE = 65536


class _Response:
    """httptools callbacks: what the parser saw of one response. Anything after its end
    (the parser would take it for a next response) is ignored and marks the connection
    unusable (``extra``)."""

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False
        self.keep_alive = False  # read at the end: llhttp forgets it once the message ends
        self.extra = False
        self.body: list[bytes] = []
        self.body_bytes = 0

    def on_message_begin(self) -> None:
        self.extra = self.extra or self.done

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        if self.done:
            self.extra = True
            return
        self.body_bytes += len(body)
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.done and self.parser is not None:
            self.keep_alive = self.parser.should_keep_alive()
        self.done = True
        # the parser holds this object's bound callbacks: a reference cycle, left to the
        # garbage collector with everything it reaches (issue #12: per request)
        self.parser = None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def reusable(self) -> bool:
        """Still open, and the agent sent nothing since the last response ended."""
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.reader.exception() is None
            and not getattr(self.reader, "_buffer", b"")  # bytes nobody asked for
        )

    def close(self) -> None:
        self.writer.close()


class AgentTransport(httpx.AsyncBaseTransport):
    """httpx transport to one agent (``host:port``, or ``unix:<path>``)."""

    def __init__(self, address: str) -> None:
        self._uds = address.removeprefix("unix:") if address.startswith("unix:") else None
        host, _, port = address.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port) if self._uds is None and port.isdigit() else 0
        self._idle: list[_Connection] = []
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
        head.append(b"\r\n")
        conn = await self._connection(timeout.get("connect"))
        try:
            await self._send(conn, b"".join(head) + body, timeout.get("write"))
            response, parser = await self._read_head(conn, timeout.get("read"))
        except BaseException:
            conn.close()
            raise
        stream = _BodyStream(self, conn, parser, response, timeout.get("read"))
        return httpx.Response(
            parser.get_status_code(),
            headers=response.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # --- connections --------------------------------------------------------------------

    async def _connection(self, connect_timeout: float | None) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable:
                return conn
            conn.close()
        try:
            async with asyncio.timeout(connect_timeout):
                if self._uds is not None:
                    reader, writer = await asyncio.open_unix_connection(self._uds)
                else:
                    reader, writer = await asyncio.open_connection(self._host, self._port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connecting to the agent timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.get_extra_info("socket")
        if self._uds is None and sock is not None:
            # Nagle + delayed ACK would add ~40 ms to a request; it is written in one piece.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(reader, writer)

    def _release(self, conn: _Connection, keep_alive: bool) -> None:
        if keep_alive and not self._closed and len(self._idle) < MAX_IDLE and conn.reusable:
            self._idle.append(conn)
        else:
            conn.close()

    # --- one exchange ---------------------------------------------------------------------

    @staticmethod
    async def _send(conn: _Connection, data: bytes, write_timeout: float | None) -> None:
        conn.writer.write(data)
        try:
            async with asyncio.timeout(write_timeout):
                await conn.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("writing to the agent timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    @staticmethod
    async def _read_head(
        conn: _Connection, read_timeout: float | None
    ) -> tuple[_Response, httptools.HttpResponseParser]:
        response = _Response()
        parser = response.parser = httptools.HttpResponseParser(response)
        received = 0
        while not response.head_done:
            data = await _read(conn, read_timeout)
            if not data:
                raise httpx.RemoteProtocolError(
                    "the agent closed the connection without a response"
                )
            received += len(data)
            _feed(parser, data)
            if not response.head_done and received > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(f"response head over {MAX_HEAD_BYTES} bytes")
        if parser.get_status_code() < 200:
            raise httpx.RemoteProtocolError("an informational response from the agent")
        _check_body(response)
        return response, parser


class _BodyStream(httpx.AsyncByteStream):
    """The response body as it arrives; the connection goes back to the transport once
    the body is complete (or is closed when the stream is left early)."""

    def __init__(
        self,
        transport: AgentTransport,
        conn: _Connection,
        parser: httptools.HttpResponseParser,
        response: _Response,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        # dropped once read: httpx's response and its bound stream hold each other, so
        # what they still reference waits for the garbage collector (issue #12)
        self._parser: httptools.HttpResponseParser | None = parser
        self._response: _Response | None = response
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        response, parser = self._response, self._parser
        if response is None or parser is None:
            raise httpx.ReadError("the response stream was closed")
        while True:
            if response.body:
                chunk = b"".join(response.body)
                response.body.clear()
                yield chunk
            if response.done:
                break
            conn = self._conn
            if conn is None:
                raise httpx.ReadError("the response stream was closed")
            try:
                data = await _read(conn, self._read_timeout)
                if not data:
                    raise httpx.RemoteProtocolError("the agent closed the connection mid-response")
                _feed(parser, data)
                _check_body(response)
            except BaseException:
                self._drop()
                raise
        self._response = self._parser = None
        conn, self._conn = self._conn, None
        if conn is not None:
            keep = response.keep_alive and not response.extra
            self._transport._release(conn, keep)

    async def aclose(self) -> None:
        self._drop()

    def _drop(self) -> None:
        self._response = self._parser = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


async def _read(conn: _Connection, read_timeout: float | None) -> bytes:
    try:
        async with asyncio.timeout(read_timeout):
            return await conn.reader.read(READ_SIZE)
    except TimeoutError as exc:
        raise httpx.ReadTimeout("the agent did not answer in time") from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


def _feed(parser: httptools.HttpResponseParser, data: bytes) -> None:
    try:
        parser.feed_data(data)
    except httptools.HttpParserError as exc:
        raise httpx.RemoteProtocolError(f"malformed response from the agent: {exc}") from exc


def _check_body(response: _Response) -> None:
    if response.body_bytes > MAX_BODY_BYTES:
        raise httpx.RemoteProtocolError(f"response body over {MAX_BODY_BYTES} bytes")
