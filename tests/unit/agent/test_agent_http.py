"""The agent's own HTTP/1.1 server (tether/agent/http.py) on a real loopback socket.

The agent is on the untrusted side: anything in the workspace can connect to it. These tests
attack its parser — oversized heads and bodies, malformed request lines and headers, bad
chunking, a slowloris trickle, a stalled body — and check each gets a typed 4xx (or a quiet
close) within a bound, and that well-formed keep-alive, chunked and streamed traffic works.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tether.agent.app import AgentApi, build_app
from tether.agent.http import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    HttpServer,
    Limits,
    Request,
    Response,
    json_response,
)
from tether.agent.lifecycle import LifecycleState
from tether.agent.main import listen_socket
from tether.agent.mcphost import McpHost
from tether.agent.processes import ProcessManager
from tether.agent.state import AgentState
from tether.clock import SystemClock

DEADLINE_S = 10.0
LIMITS = Limits(header_timeout_s=0.5, body_timeout_s=0.5, keepalive_s=0.5, max_body_bytes=1000)


async def _echo(request: Request) -> Response:
    if request.path == "/stream":

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"line {i}\n".encode()

        return Response(200, content_type="application/x-ndjson", stream=chunks())
    return json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": request.body.decode(),
            "auth": request.headers.get("authorization"),
        }
    )


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, int]]:
    sock = listen_socket()
    srv = HttpServer(_echo, LIMITS)
    await srv.start(sock)
    try:
        yield srv, sock.getsockname()[1]
    finally:
        await srv.close(DEADLINE_S)


async def _exchange(port: int, data: bytes, *, read_s: float = DEADLINE_S) -> bytes:
    """Send ``data``, then read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_s)
    finally:
        writer.close()


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _json_body(raw: bytes) -> dict[str, object]:
    return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))


async def test_keepalive_requests_with_bodies_and_queries(server: tuple[HttpServer, int]) -> None:
    _, port = server
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S) as c:
        for i in range(3):
            r = await c.post(
                f"/a%20b?x={i}&y=", content=b'{"k": 1}', headers={"Authorization": "t"}
            )
            assert r.status_code == 200
            assert r.json() == {
                "method": "POST",
                "path": "/a b",
                "query": {"x": str(i), "y": ""},
                "body": '{"k": 1}',
                "auth": "t",
            }
            assert server[0].connections == 1  # the same keep-alive connection


async def test_chunked_request_body_and_streamed_response(server: tuple[HttpServer, int]) -> None:
    _, port = server

    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S) as c:
        r = await c.post("/x", content=body())
        assert r.json()["body"] == "hello world"
        async with c.stream("GET", "/stream") as streamed:
            assert streamed.headers["transfer-encoding"] == "chunked"
            lines = [line async for line in streamed.aiter_lines()]
        assert lines == ["line 0", "line 1", "line 2"]


async def test_expect_100_continue_is_answered(server: tuple[HttpServer, int]) -> None:
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ok")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
        assert _status(head) == 200
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_line",
    [
        b"GARBAGE",
        b"GET /x",
        b"GET x HTTP/1.1",
        b"GET /x HTTP/2.0",
        b"GET  /x HTTP/1.1",
        b"G(T /x HTTP/1.1",
        b"\x00\x01\x02 / HTTP/1.1",
    ],
)
async def test_malformed_request_line_is_a_400_and_closes(
    server: tuple[HttpServer, int], request_line: bytes
) -> None:
    raw = await _exchange(server[1], request_line + b"\r\nHost: x\r\n\r\n")
    assert _status(raw) == 400
    assert _json_body(raw)["code"] == "bad_request"


@pytest.mark.parametrize(
    "header",
    [b"NoColon", b": empty-name", b"Bad Name: x", b"Content-Length: abc", b"Content-Length: -1"],
)
async def test_malformed_headers_are_a_400(server: tuple[HttpServer, int], header: bytes) -> None:
    raw = await _exchange(server[1], b"POST /x HTTP/1.1\r\n" + header + b"\r\n\r\n")
    assert _status(raw) == 400


async def test_content_length_with_chunked_or_other_encodings_is_a_400(
    server: tuple[HttpServer, int],
) -> None:
    both = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    assert _status(await _exchange(server[1], both)) == 400
    gzip = b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert _status(await _exchange(server[1], gzip)) == 400


async def test_oversized_head_is_a_431(server: tuple[HttpServer, int]) -> None:
    big = b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n"
    raw = await _exchange(server[1], big)
    assert _status(raw) == 431
    many = b"GET /x HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    assert _status(await _exchange(server[1], many + b"\r\n")) == 431


async def test_oversized_body_is_a_413_before_it_is_read(server: tuple[HttpServer, int]) -> None:
    # Only the head is sent: the 413 must not wait for a body that never comes.
    raw = await _exchange(server[1], b"POST /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n")
    assert _status(raw) == 413
    assert _json_body(raw)["code"] == "payload_too_large"
    chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n"  # 1001 bytes
    assert _status(await _exchange(server[1], chunked)) == 413


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\nab\r\n0\r\n\r\n", b"2\r\nabXX0\r\n\r\n", b"1" * 2000 + b"\r\n"],
)
async def test_malformed_chunks_are_a_4xx(server: tuple[HttpServer, int], chunks: bytes) -> None:
    raw = await _exchange(
        server[1], b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    )
    assert 400 <= _status(raw) < 500


async def test_oversized_chunk_trailer_is_a_400(server: tuple[HttpServer, int]) -> None:
    head = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "
    raw = await _exchange(server[1], head + b"a" * 70_000 + b"\r\n\r\n")
    assert _status(raw) == 400


async def test_slowloris_head_is_cut_off_at_the_header_deadline(
    server: tuple[HttpServer, int],
) -> None:
    """A client trickling its head a byte at a time would hold the connection for ~40 s; the
    server answers 408 and closes once header_timeout_s (0.5 s here) has passed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server[1])
    head = b"GET /x HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 400
    started = time.monotonic()
    try:
        for byte in head:
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break
            if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.1)
        raw = await asyncio.wait_for(reader.read(), DEADLINE_S)
    finally:
        writer.close()
    assert time.monotonic() - started < 5.0
    assert _status(raw) == 408


async def test_stalled_body_is_cut_off_at_the_body_deadline(
    server: tuple[HttpServer, int],
) -> None:
    started = time.monotonic()
    raw = await _exchange(server[1], b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    assert _status(raw) == 408
    assert time.monotonic() - started < 5.0


async def test_idle_connections_are_closed(server: tuple[HttpServer, int]) -> None:
    """A connection that never sends anything, and one idle after a request, are closed."""
    started = time.monotonic()
    assert await _exchange(server[1], b"") == b""
    raw = await _exchange(server[1], b"GET /x HTTP/1.1\r\n\r\n")
    assert _status(raw) == 200  # then the keep-alive timeout closed it
    assert time.monotonic() - started < 5.0


async def test_http_1_0_closes_after_the_response(server: tuple[HttpServer, int]) -> None:
    raw = await _exchange(server[1], b"GET /x HTTP/1.0\r\n\r\n", read_s=0.4)
    assert _status(raw) == 200 and b"connection: close" in raw


# --- the agent's routes behind the server -----------------------------------------------------


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    clock = SystemClock()
    state = AgentState(
        home=tmp_path, directory=tmp_path, clock=clock, base_env={}, lifecycle=LifecycleState.READY
    )
    processes = ProcessManager(state, kill_grace_s=1.0)
    mcp = McpHost(directory=lambda: tmp_path, env=state.command_env, clock=clock)
    sock = listen_socket()
    srv = HttpServer(build_app(AgentApi(state, processes, mcp), "sekrit"))
    await srv.start(sock)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
            headers={"Authorization": "Bearer sekrit"},
            timeout=DEADLINE_S,
        ) as client:
            yield client
    finally:
        await srv.close(DEADLINE_S)
        await processes.close()
        await mcp.close()


async def test_routes_answer_typed_errors(agent: httpx.AsyncClient) -> None:
    r = await agent.get("/health", headers={"Authorization": "Bearer wrong"})
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    r = await agent.get("/nope")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await agent.get("/exec")
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")
    r = await agent.post("/exec", content=b"{not json")
    assert (r.status_code, r.json()["code"]) == (400, "invalid_input")
    r = await agent.post("/exec", json={"command": ""})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_input")
    r = await agent.get("/processes/nope/output")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await agent.post("/files/read", json={"path": "../../etc/passwd"})
    assert r.status_code in (400, 403, 404) and r.json()["code"] != "internal"


async def test_exec_round_trip(agent: httpx.AsyncClient) -> None:
    r = await agent.post("/exec", json={"command": "echo hi"})
    assert r.status_code == 200
    assert r.json()["output"] == "hi\n" and r.json()["exit_code"] == 0
