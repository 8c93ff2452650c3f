"""A foreground exec reads its stream to the end (issue #12; ``AgentClient._read_to_end``):
the connection is kept alive for the next request instead of being closed and dialled
again, and an agent that sends its result but never ends the stream (or sends more) cannot
hold the result back longer than the connect timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest

from support.agent_procs import RunningAgent
from tether.agentconn import AgentClient
from tether.agentconn.transport import AgentTransport


async def test_execs_share_one_kept_alive_connection(agent: RunningAgent) -> None:
    transport = AgentTransport(agent.address)
    client = AgentClient(
        agent.address,
        agent.secret,
        connect_timeout=2.0,
        request_timeout=10.0,
        transport=transport,
    )
    try:
        seen = set()
        for i in range(5):
            result = await client.exec(f"echo {i}", timeout_s=10)
            assert result.output == f"{i}\n"
            [idle] = transport._idle  # back in the idle list after the complete response
            seen.add(id(idle))
        assert len(seen) == 1  # never closed and dialled again
    finally:
        await client.aclose()


RESULT = {"exit_code": 0, "output": "ok\n", "truncated": False, "wall_ms": 1, "timed_out": False}


@contextlib.asynccontextmanager
async def fake_agent(after_result: bytes | None) -> AsyncIterator[str]:
    """An HTTP agent that answers every request with an exec stream: process id, result,
    then ``after_result`` (None: nothing, and the stream never ends)."""

    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            for frame in ({"process_id": "p1"}, {"result": RESULT}):
                line = json.dumps(frame).encode() + b"\n"
                writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            if after_result is not None:
                writer.write(after_result)
            await writer.drain()
            await reader.read()  # hold the connection until the client goes

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "after_result",
    [None, b"5\r\nmore\n\r\n"],
    ids=["stream never ends", "a line after the result"],
)
async def test_a_result_is_not_held_back_by_what_follows_it(after_result: bytes | None) -> None:
    """The old behaviour returned at the result line; reading on must not turn a stalled
    stream into a wait for the exec deadline (10 s + 5 s margin here): the ceiling is the
    connect timeout (0.3 s) plus generous scheduling slack."""
    async with fake_agent(after_result) as address:
        client = AgentClient(
            address, "secret", connect_timeout=0.3, request_timeout=10.0, exec_margin=5.0
        )
        try:
            t0 = time.monotonic()
            result = await client.exec("true", timeout_s=10)
            elapsed = time.monotonic() - t0
        finally:
            await client.aclose()
    assert result.output == "ok\n" and result.process_id == "p1"
    assert elapsed < 3.0, elapsed
