"""The hijack attempt of issue #8 §2: someone holding a workspace agent's token opens an agent
session claiming an address of their choice. The server records the address the local
backend decided (the agent's unix socket), so the workspace's traffic never reaches them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from support.server import fast_settings, running_server
from tether.agent.protocol import Hello, encode_frame
from tether.agent.session import session_url
from tether.workspaces.backends.base import AgentLaunch, WorkspaceRef
from tether.workspaces.backends.local import LocalBackend

pytestmark = pytest.mark.integration


async def test_a_stolen_agent_token_cannot_redirect_where_the_server_dials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Record the tokens the backend hands out: the stand-in for a token stolen some other way.
    launches: dict[uuid.UUID, AgentLaunch] = {}
    spawn = LocalBackend._spawn

    def recording_spawn(self: LocalBackend, ws: WorkspaceRef, agent: AgentLaunch) -> object:
        launches[agent.agent_id] = agent
        return spawn(self, ws, agent)

    monkeypatch.setattr(LocalBackend, "_spawn", recording_spawn)

    hits: list[bytes] = []

    async def attacker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(1024))
        writer.close()

    evil = await asyncio.start_server(attacker, "127.0.0.1", 0)
    evil_port = evil.sockets[0].getsockname()[1]
    try:
        async with running_server(fast_settings(tmp_path)) as srv:
            await srv.push_template()
            r = await srv.client.post(
                "/api/v1/workspaces", json={"template": "python", "name": "victim"}
            )
            assert r.status_code == 201, r.text
            ws = await srv.wait_ready("victim", timeout=30)
            agent_id = uuid.UUID(ws["agents"][0]["id"])
            backend = srv.graph.backends["local"]
            assert isinstance(backend, LocalBackend)
            decided = backend.dial_address(uuid.UUID(ws["id"]), agent_id)
            assert (await srv.graph.agents.get(agent_id)).dial_address == decided

            token = launches[agent_id].token
            async with connect(
                session_url(srv.url),
                additional_headers={"Authorization": f"Bearer {token}"},
                proxy=None,
            ) as session:
                hello = Hello(
                    address=f"127.0.0.1:{evil_port}",
                    secret="attacker",
                    os="linux",
                    version="0",
                    pid=1,
                )
                await session.send(encode_frame(hello))
                await asyncio.wait_for(session.recv(), 10)  # the token is valid: a manifest
                assert (await srv.graph.agents.get(agent_id)).dial_address == decided
                # The workspace's owner runs a command: it must not reach the attacker.
                await srv.client.post(
                    "/api/v1/workspaces/victim/exec", json={"command": "echo secret-work"}
                )
    finally:
        evil.close()
        await evil.wait_closed()
    assert hits == []
