"""A template's ``mcp`` config and parameters reach the agent through the session manifest:
the agent writes ``.mcp.json`` into its working directory and lists the servers' tools, and
commands see the template's env and ``TETHER_PARAM_<NAME>``."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from support.server import fast_settings, running_server
from tether.agentconn.client import AgentClient

pytestmark = pytest.mark.integration

ECHO_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_echo_server.py"


def _template() -> str:
    mcp = {"mcpServers": {"echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]}}}
    # JSON is YAML: the command paths need no quoting rules of their own.
    return f"""
name: withmcp
directory: project
parameters:
  - name: flavour
    default: vanilla
env:
  FROM_TEMPLATE: "yes"
mcp: {json.dumps(mcp)}
"""


async def test_template_mcp_config_is_written_and_its_tools_listed(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template(_template())
        r = await srv.client.post(
            "/api/v1/workspaces",
            json={"template": "withmcp", "name": "m", "parameters": {"flavour": "mint"}},
        )
        assert r.status_code == 201, r.text
        ws = await srv.wait_ready("m", timeout=30)
        assert ws["agents"][0]["lifecycle_state"] == "ready"
        agent = await srv.graph.agents.get(uuid.UUID(ws["agents"][0]["id"]))
        assert agent.dial_address and agent.dial_secret
        async with AgentClient(
            agent.dial_address, agent.dial_secret, connect_timeout=2.0, request_timeout=30.0
        ) as client:
            listing = await client.mcp_tools()
            assert "echo__echo" in {t.name for t in listing.tools}, listing
            assert [(s.name, s.status) for s in listing.servers] == [("echo", "ok")]
            echoed = await client.mcp_call("echo__echo", {"text": "through the template"})
            assert echoed.content[0].text == "through the template"

            written = await client.read_file(".mcp.json")
            assert "mcpServers" in written.content

            result = await client.exec('echo "$FROM_TEMPLATE $TETHER_PARAM_FLAVOUR"')
            assert result.output.strip() == "yes mint"
