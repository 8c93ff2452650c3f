"""A hanging MCP server never delays the agent's listing beyond the caller's bound (issue #9
§3), through a real agent with tests/fixtures/mcp_hanging_server.py and the echo server."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from support.agent_procs import RunningAgent, start_agent, stop_agent
from tether.agentconn import AgentClient
from tether.errors import AgentRequestFailed

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ECHO_SERVER = FIXTURES / "mcp_echo_server.py"
HANGING_SERVER = FIXTURES / "mcp_hanging_server.py"
# Generous: a cold Python MCP server (the echo one) takes seconds to connect on a loaded
# 2-core machine; the old agent waited for every server, so bounds well below it still bite.
CONNECT_S = 10.0


def write_config(project: Path, servers: dict[str, object]) -> None:
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": servers}))


def statuses(listing: object) -> dict[str, str]:
    return {s.name: s.status for s in listing.servers}  # type: ignore[attr-defined]


async def test_hanging_server_is_pending_within_the_wait_then_negatively_cached(
    tmp_path: Path,
) -> None:
    agent = await start_agent(tmp_path, {"TETHER_AGENT_MCP_CONNECT_TIMEOUT_S": str(CONNECT_S)})
    client = agent.client(request_timeout=2 * CONNECT_S)  # a listing may wait the bound
    starts = tmp_path / "starts.txt"
    try:
        write_config(
            agent.project,
            {
                "echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]},
                "hangs": {"command": sys.executable, "args": [str(HANGING_SERVER), str(starts)]},
            },
        )
        # The listing answers within its bound, long before the connect bound (the old
        # agent waited for every server: CONNECT_S).
        began = time.monotonic()
        first = await client.mcp_tools(wait=2.0)
        assert time.monotonic() - began < 2.0 + 1.0
        assert statuses(first)["hangs"] == "pending"
        # A listing right after does not wait for the same attempt again.
        began = time.monotonic()
        second = await client.mcp_tools(wait=2.0)
        assert time.monotonic() - began < 3.0
        assert statuses(second)["hangs"] == "pending"

        # The echo server's tools arrive while the other one still hangs.
        async with asyncio.timeout(CONNECT_S):
            while statuses(listing := await client.mcp_tools(wait=0.2)).get("echo") != "ok":
                pass
        assert "echo__echo" in {t.name for t in listing.tools}

        # After the connect bound the hanging server is an error, with its retry time.
        async with asyncio.timeout(CONNECT_S + 3):
            while statuses(listing := await client.mcp_tools(wait=0.5))["hangs"] != "error":
                pass
        hangs = next(s for s in listing.servers if s.name == "hangs")
        assert hangs.error == f"timed out connecting after {CONNECT_S:g}s"
        assert hangs.retry_in_s is not None and 0 < hangs.retry_in_s <= 10

        # Negative cache: the next listings answer at once and do not start it again.
        began = time.monotonic()
        again = await client.mcp_tools()  # default wait: up to the connect bound
        assert time.monotonic() - began < 3.0
        assert statuses(again) == {"echo": "ok", "hangs": "error"}
        assert starts.read_text().count("start") == 1

        # A .mcp.json change clears it: the server is started again at once.
        write_config(
            agent.project,
            {
                "echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]},
                "hangs": {
                    "command": sys.executable,
                    "args": [str(HANGING_SERVER), str(starts), "changed"],
                },
            },
        )
        changed = await client.mcp_tools(wait=CONNECT_S + 1)  # a first attempt again
        assert statuses(changed) == {"echo": "ok", "hangs": "error"}
        assert starts.read_text().count("start") == 2
    finally:
        await client.aclose()
        assert await stop_agent(agent.proc) == 0


@pytest.mark.parametrize("wait", ["abc", "-1", "nan", "inf", "1e9", ""])
async def test_bad_wait_is_a_typed_400(agent: RunningAgent, client: AgentClient, wait: str) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://{agent.address}",
        headers={"Authorization": f"Bearer {agent.secret}"},
        timeout=10,
    ) as http:
        r = await http.get("/mcp/tools", params={"wait": wait})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_input"


async def test_calls_wait_only_for_their_own_server(tmp_path: Path) -> None:
    agent = await start_agent(tmp_path, {"TETHER_AGENT_MCP_CONNECT_TIMEOUT_S": str(CONNECT_S)})
    client = agent.client(request_timeout=2 * CONNECT_S)  # a listing may wait the bound
    try:
        write_config(
            agent.project,
            {
                "echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]},
                "hangs": {"command": sys.executable, "args": [str(HANGING_SERVER)]},
            },
        )
        # A tool of a server still connecting (no listing yet): the call waits for it.
        echoed = await client.mcp_call("echo__echo", {"text": "cold"})
        assert [(c.type, c.text) for c in echoed.content] == [("text", "cold")]
        # An unknown name is a 404 at once, although "hangs" is still connecting.
        began = time.monotonic()
        with pytest.raises(AgentRequestFailed) as unknown:
            await client.mcp_call("nope__tool", {})
        assert unknown.value.status == 404
        assert time.monotonic() - began < 3.0
        assert statuses(await client.mcp_tools(wait=0))["hangs"] == "pending"
    finally:
        await client.aclose()
        assert await stop_agent(agent.proc) == 0
