"""Dialing: live agents, closed ports and black holes."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from support.agent_procs import RunningAgent
from tether.agentconn import dial
from tether.errors import AgentRequestFailed, AgentTransportError

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_dial_live_agent_sends_chat_headers(agent: RunningAgent) -> None:
    client = await dial(
        agent.address,
        agent.secret,
        headers={"X-Tether-Chat-Id": "chat-1"},
        connect_timeout=1,
        request_timeout=5,
    )
    try:
        client.set_chat("chat-2", ["root-1", "parent-1"])
        assert (await client.exec("true")).exit_code == 0
    finally:
        await client.aclose()
    log = agent.stderr()
    assert "chat=chat-1" in log
    assert "chat=chat-2 ancestors=root-1,parent-1" in log


async def test_dial_with_wrong_secret_is_unauthorized(agent: RunningAgent) -> None:
    with pytest.raises(AgentRequestFailed) as info:
        await dial(agent.address, "nope", connect_timeout=1, request_timeout=5)
    assert info.value.status == 401


async def test_dial_closed_port_fails_fast() -> None:
    start = time.monotonic()
    with pytest.raises(AgentTransportError):
        await dial(f"127.0.0.1:{closed_port()}", "s", connect_timeout=2, request_timeout=5)
    assert time.monotonic() - start < 1.0


async def test_dial_black_hole_fails_at_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # hold the connection open, say nothing

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        start = time.monotonic()
        with pytest.raises(AgentTransportError):
            await dial(f"127.0.0.1:{port}", "s", connect_timeout=0.2, request_timeout=0.3)
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 1.5
        assert accepted, "the connection was accepted; the request timed out"
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
