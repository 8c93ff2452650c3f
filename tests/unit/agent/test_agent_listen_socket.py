"""The agent's listening socket: connections it accepts must have TCP_NODELAY.

Without it, a response written in two parts (a stream's head, then its chunks) meets Nagle's
algorithm and the client's delayed ACK, and every request on a reused keep-alive connection
stalls ~40 ms.
These tests check the property, not the timing (speed is measured by bench/workspace.py).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

from tether.agent.app import AgentApi, build_app
from tether.agent.http import HttpServer
from tether.agent.main import listen_socket
from tether.agent.mcphost import McpHost
from tether.agent.processes import ProcessManager
from tether.agent.protocol import LifecycleState
from tether.agent.state import AgentState
from tether.clock import SystemClock

DEADLINE_S = 10.0


def _nodelay(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_listen_socket_is_tcp_on_loopback() -> None:
    sock = listen_socket()
    try:
        # asyncio only sets TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP.
        assert sock.proto == socket.IPPROTO_TCP
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
    finally:
        sock.close()


async def test_asyncio_server_on_listen_socket_accepts_with_nodelay() -> None:
    accepted: asyncio.Queue[bool] = asyncio.Queue()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.put_nowait(_nodelay(writer.get_extra_info("socket")))
        writer.close()

    server = await asyncio.start_server(on_client, sock=listen_socket())
    try:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(accepted.get(), DEADLINE_S) is True
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_agent_http_server_keepalive_connection_has_nodelay(tmp_path: Path) -> None:
    """The real agent app under the agent's HTTP server, as ``Agent.serve`` runs it."""
    clock = SystemClock()
    state = AgentState(
        home=tmp_path,
        directory=tmp_path,
        clock=clock,
        base_env={},
        lifecycle=LifecycleState.READY,
    )
    processes = ProcessManager(state, kill_grace_s=1.0)
    mcp = McpHost(directory=lambda: tmp_path, env=state.command_env, clock=clock)
    app = build_app(AgentApi(state, processes, mcp), "sekrit")
    sock = listen_socket()
    address = f"127.0.0.1:{sock.getsockname()[1]}"
    server = HttpServer(app)
    await server.start(sock)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{address}",
            headers={"Authorization": "Bearer sekrit"},
            timeout=DEADLINE_S,
            trust_env=False,
        ) as http:
            for _ in range(3):  # the same keep-alive connection, reused
                response = await http.get("/health")
                assert response.status_code == 200
            assert server.connections == 1
            sockets = server.sockets()
            assert len(sockets) == 1 and _nodelay(sockets[0])
    finally:
        await server.close(DEADLINE_S)
        await processes.close()
        await mcp.close()
