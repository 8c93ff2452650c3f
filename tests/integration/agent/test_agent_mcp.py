"""Workspace MCP servers through a real agent, with tests/fixtures/mcp_echo_server.py."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from support.agent_procs import RunningAgent, start_agent, stop_agent
from tether.agentconn import AgentClient
from tether.errors import AgentRequestFailed

pytestmark = pytest.mark.integration

ECHO_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_echo_server.py"


def write_config(project: Path, servers: dict[str, object]) -> None:
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": servers}))


async def test_mcp_tools_listed_and_called_broken_server_reported(
    client: AgentClient, agent: RunningAgent
) -> None:
    write_config(
        agent.project,
        {
            "echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]},
            "broken": {"command": str(agent.project / "no-such-binary")},
            "nocommand": {"args": ["x"]},
        },
    )
    listing = await client.mcp_tools()
    names = sorted(t.name for t in listing.tools)
    assert names == ["echo__add", "echo__echo", "echo__fail"]
    add = next(t for t in listing.tools if t.name == "echo__add")
    assert (add.server, add.tool) == ("echo", "add")
    assert add.description == "Add two integers."
    assert set(add.input_schema["properties"]) == {"a", "b"}
    statuses = {s.name: s for s in listing.servers}
    assert statuses["echo"].status == "ok"
    assert statuses["broken"].status == "error" and statuses["broken"].error
    assert statuses["nocommand"].status == "error"

    echoed = await client.mcp_call("echo__echo", {"text": "hi there"})
    assert echoed.is_error is False
    assert [(c.type, c.text) for c in echoed.content] == [("text", "hi there")]
    added = await client.mcp_call("echo__add", {"a": 2, "b": 40})
    assert added.content[0].text == "42"
    failed = await client.mcp_call("echo__fail", {})
    assert failed.is_error is True
    assert "always fails" in (failed.content[0].text or "")

    with pytest.raises(AgentRequestFailed) as unknown:
        await client.mcp_call("echo__nope", {})
    assert (unknown.value.status, unknown.value.agent_code) == (404, "not_found")

    # Editing the config reloads it: the echo server disappears.
    write_config(agent.project, {})
    assert (await client.mcp_tools()).tools == []
    with pytest.raises(AgentRequestFailed):
        await client.mcp_call("echo__echo", {"text": "gone"})


async def test_mcp_invalid_config_is_one_error(client: AgentClient, agent: RunningAgent) -> None:
    assert (await client.mcp_tools()).servers == []  # no .mcp.json: nothing, no error
    (agent.project / ".mcp.json").write_text("{not json")
    listing = await client.mcp_tools()
    assert listing.tools == []
    [entry] = listing.servers
    assert entry.name == ".mcp.json"
    assert entry.status == "error"
    assert "invalid JSON" in (entry.error or "")
    assert (await client.health()).status == "ok"


async def test_mcp_hanging_server_is_bounded_by_the_connect_timeout(tmp_path: Path) -> None:
    # 10 s: a cold echo server must connect in time even on a loaded 2-core machine
    agent = await start_agent(tmp_path, {"TETHER_AGENT_MCP_CONNECT_TIMEOUT_S": "10"})
    client = agent.client(request_timeout=20.0)  # the listing may wait the whole bound
    try:
        write_config(
            agent.project,
            {
                "echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]},
                "hangs": {"command": sys.executable, "args": ["-c", "import time; time.sleep(60)"]},
            },
        )
        start = time.monotonic()
        listing = await client.mcp_tools()
        assert time.monotonic() - start < 14
        statuses = {s.name: (s.status, s.error) for s in listing.servers}
        assert statuses["echo"] == ("ok", None)
        assert statuses["hangs"] == ("error", "timed out connecting after 10s")
        assert (await client.mcp_call("echo__add", {"a": 1, "b": 1})).content[0].text == "2"
    finally:
        await client.aclose()
        assert await stop_agent(agent.proc) == 0
