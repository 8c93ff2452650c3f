"""``GET /api/v1/workspaces/{ref}/agents/{agent_id}/logs``: an agent's startup-script log as
JSON, or followed as SSE until the lifecycle is final; real server, real agents."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from support.server import fast_settings, running_server
from tether.sdk import iter_sse

pytestmark = pytest.mark.integration

FAILING = """
name: failing
startup_script: |
  echo "about to fail"
  exit 7
"""

SLOW = """
name: slow
startup_script: |
  echo one
  sleep 0.5
  echo two
"""


async def _create(srv: Any, template: str, name: str) -> dict[str, Any]:
    r = await srv.client.post("/api/v1/workspaces", json={"template": template, "name": name})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _first_agent_id(srv: Any, name: str, timeout: float = 15.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        agents = (await srv.client.get(f"/api/v1/workspaces/{name}")).json().get("agents") or []
        if agents:
            return str(agents[0]["id"])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"workspace {name} has no agent after {timeout}s")
        await asyncio.sleep(0.05)


async def test_failed_startup_log_as_json_and_sse(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template(FAILING)
        await _create(srv, "failing", "f")
        ws = await srv.wait_ready("f")
        agent_id = ws["agents"][0]["id"]
        assert ws["agents"][0]["lifecycle_state"] == "start_error"

        r = await srv.client.get(f"/api/v1/workspaces/f/agents/{agent_id}/logs")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["lifecycle_state"] == "start_error"
        outputs = [ln["output"] for ln in body["logs"]]
        assert outputs == ["about to fail", "startup script exited with code 7"]
        assert [ln["level"] for ln in body["logs"]] == ["info", "error"]
        assert all(ln["source"] == "startup_script" for ln in body["logs"])

        # Already final: follow replays the lines and ends at once.
        events = []
        async with srv.client.stream(
            "GET", f"/api/v1/workspaces/f/agents/{agent_id}/logs", params={"follow": "true"}
        ) as response:
            assert response.status_code == 200
            async for event in iter_sse(response.aiter_lines()):
                events.append((event.event, event.json()))
        assert [e for e, _ in events] == ["log", "log", "done"]
        assert events[0][1]["output"] == "about to fail"
        assert events[-1][1] == {"lifecycle_state": "start_error"}

        # Unknown agents, and agents of another workspace, are 404.
        r = await srv.client.get(f"/api/v1/workspaces/f/agents/{uuid.uuid4()}/logs")
        assert r.status_code == 404
        await srv.push_template(SLOW)
        await _create(srv, "slow", "other")
        other_id = await _first_agent_id(srv, "other")
        r = await srv.client.get(f"/api/v1/workspaces/f/agents/{other_id}/logs")
        assert r.status_code == 404


async def test_follow_streams_until_the_startup_script_finishes(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template(SLOW)
        await _create(srv, "slow", "s")
        agent_id = await _first_agent_id(srv, "s")
        events = []
        async with asyncio.timeout(20):
            async with srv.client.stream(
                "GET", f"/api/v1/workspaces/s/agents/{agent_id}/logs", params={"follow": "true"}
            ) as response:
                assert response.status_code == 200
                async for event in iter_sse(response.aiter_lines()):
                    events.append((event.event, event.json()))
        assert [d["output"] for e, d in events if e == "log"] == ["one", "two"]
        assert events[-1] == ("done", {"lifecycle_state": "ready"})
