"""The agent transport (src/tether/agentconn/transport.py) is a trust boundary: the agent
runs inside the user's workspace. Each test plays a hostile agent on a real socket —
oversized headers, an endless chunked body, a response that never ends, a garbage status
line, a redirect, bytes after the response — and asserts the typed error (or that
nothing is followed or reused), within a ceiling far below what a hang would take. And
against a real agent: requests share one kept-alive connection; one the agent closed while
idle is replaced, not used."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httptools
import pytest

from support.agent_procs import RunningAgent
from tether.agentconn import AgentClient
from tether.agentconn.transport import MAX_BODY_BYTES, MAX_HEAD_BYTES, AgentTransport, _Response
from tether.errors import AgentError, AgentTransportError

CEILING_S = 5.0  # every attack below ends well within this; a hang would not
OK_JSON = b'{"os": "hi", "directory": "/w", "files": []}'

Respond = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeAgent:
    address: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fake_agent(respond: Respond) -> AsyncIterator[FakeAgent]:
    """An agent on loopback that reads each request's head (and Content-Length body) and
    answers with ``respond``; it keeps the connection for the next request."""
    writers: list[asyncio.StreamWriter] = []
    agent = FakeAgent("")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        agent.connections += 1
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                agent.requests.append(head.split(b"\r\n")[0])
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                await respond(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    agent.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield agent
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def client_of(agent: FakeAgent, request_timeout: float = 1.0) -> AgentClient:
    return AgentClient(
        agent.address,
        "secret",
        connect_timeout=0.5,
        request_timeout=request_timeout,
        exec_margin=0.5,
        transport=AgentTransport(agent.address),
    )


def ok_response(extra: bytes = b"") -> Respond:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s%s" % (len(OK_JSON), OK_JSON, extra)
        )
        await writer.drain()

    return respond


async def expect_transport_error(call: Awaitable[object]) -> AgentTransportError:
    t0 = time.monotonic()
    with pytest.raises(AgentTransportError) as info:
        await asyncio.wait_for(call, CEILING_S * 2)
    assert time.monotonic() - t0 < CEILING_S
    return info.value


# --- attacks ------------------------------------------------------------------------------


async def test_oversized_headers_are_refused() -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nx-big: ")
        for _ in range(4 * MAX_HEAD_BYTES // 1024):  # never ends its head
            writer.write(b"a" * 1024)
            await writer.drain()
        await asyncio.sleep(CEILING_S * 2)

    async with fake_agent(respond) as agent:
        client = client_of(agent, request_timeout=CEILING_S * 2)
        err = await expect_transport_error(client.instructions())
        await client.aclose()
    assert "head over" in err.message and err.sent


async def test_an_endless_chunked_body_is_cut_at_the_bound() -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()

    async with fake_agent(respond) as agent:
        client = client_of(agent, request_timeout=CEILING_S * 2)
        err = await expect_transport_error(client.instructions())
        await client.aclose()
    assert f"body over {MAX_BODY_BYTES}" in err.message


async def test_an_endless_exec_stream_ends_at_the_exec_deadline() -> None:
    """An agent that streams output forever: the exec's deadline (its timeout + margin)
    ends it, with the output received so far (capped)."""

    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        first = b'{"process_id": "p9"}\n'
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        line = b'{"output": "y"}\n'
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"%x\r\n%s\r\n" % (len(line), line))
                await writer.drain()
                await asyncio.sleep(0.001)

    async with fake_agent(respond) as agent:
        client = client_of(agent)
        err = await expect_transport_error(client.exec("yes", timeout_s=0.5))
        await client.aclose()
    assert err.details["process_id"] == "p9"
    assert err.details["partial_output"].startswith("y")


async def test_a_response_that_never_ends_times_out() -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{"text": ')
        await writer.drain()  # and nothing more

    async with fake_agent(respond) as agent:
        client = client_of(agent, request_timeout=0.5)
        err = await expect_transport_error(client.instructions())
        await client.aclose()
    assert "ReadTimeout" in err.message and err.sent


async def test_a_silent_agent_times_out() -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        return None  # reads the request, never answers

    async with fake_agent(respond) as agent:
        client = client_of(agent, request_timeout=0.5)
        err = await expect_transport_error(client.health())
        await client.aclose()
    assert "ReadTimeout" in err.message


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 abc Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"",  # closes without a response
    ],
    ids=["not http", "garbage status", "negative length", "bad chunk", "informational", "eof"],
)
async def test_a_garbage_response_is_a_transport_error(raw: bytes) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        writer.close()

    async with fake_agent(respond) as agent:
        client = client_of(agent)
        err = await expect_transport_error(client.instructions())
        await client.aclose()
    assert err.code == "agent_transport"


async def test_a_redirect_is_not_followed() -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/\r\n"
            b"content-length: 0\r\n\r\n"
        )
        await writer.drain()

    async with fake_agent(respond) as agent:
        client = client_of(agent)
        with pytest.raises(AgentError):
            await client.instructions()
        await client.aclose()
    assert len(agent.requests) == 1  # nothing was asked of the location


async def test_bytes_after_a_response_are_ignored_and_the_connection_dropped() -> None:
    body = b'{"os": "smuggled", "directory": "/", "files": []}'
    smuggled = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    async with fake_agent(ok_response(extra=smuggled)) as agent:
        client = client_of(agent)
        first = await client.instructions()
        second = await client.instructions()
        await client.aclose()
    assert first.os == second.os == "hi"  # never the smuggled answer
    assert agent.connections == 2


async def test_requests_share_a_connection() -> None:
    async with fake_agent(ok_response()) as agent:
        client = client_of(agent)
        for _ in range(5):
            assert (await client.instructions()).os == "hi"
        await client.aclose()
    assert (agent.connections, len(agent.requests)) == (1, 5)


async def test_a_connection_the_agent_closed_while_idle_is_replaced(agent: RunningAgent) -> None:
    """A real agent closes a kept-alive connection after its idle timeout; simulated here
    by closing the transport's idle connection under it."""
    transport = AgentTransport(agent.address)
    client = AgentClient(
        agent.address, agent.secret, connect_timeout=2, request_timeout=10, transport=transport
    )
    try:
        await client.health()
        [idle] = transport._idle
        idle.reader.feed_eof()  # what the loop does when the agent's FIN arrives
        assert (await client.exec("echo again", timeout_s=10)).output == "again\n"
        [fresh] = transport._idle
        assert fresh is not idle
    finally:
        await client.aclose()


async def test_a_read_response_leaves_no_parser_cycle_for_the_collector() -> None:
    """Issue #12: the parser holds the response's bound callbacks; once a response is read
    neither it nor the parser is left in a reference cycle, so reference counting frees
    them (httpx's own response ↔ stream cycle no longer reaches them either) and the young
    collections have that much less garbage per agent request."""
    async with fake_agent(ok_response()) as agent:
        client = client_of(agent)
        gc.collect()
        gc.disable()
        try:
            for _ in range(5):
                assert (await client.instructions()).os == "hi"
            left = [
                type(o)
                for o in gc.get_objects()
                if isinstance(o, _Response | httptools.HttpResponseParser)
            ]
        finally:
            gc.enable()
        await client.aclose()
    assert left == []
