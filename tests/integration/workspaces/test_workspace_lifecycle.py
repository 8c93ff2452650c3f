"""Workspaces end to end with real `tether agent` processes on the local backend, through
the real HTTP API: create → ready, exec, stop kills everything, rebuild makes new agent ids,
kill -9 → disconnected, startup failure → start_error, concurrent starts, access control,
TTL autostop."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from support.server import fast_settings, running_server

pytestmark = pytest.mark.integration

FAILING = """
name: broken
startup_script: |
  echo "about to fail"
  exit 7
"""


def _workspace_pids(workspace_id: str) -> list[int]:
    marker = f"TETHER_WORKSPACE_ID={workspace_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


async def _eventually(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def test_create_ready_exec_stop_kills_every_process(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template()
        r = await srv.client.post("/api/v1/workspaces", json={"template": "python", "name": "w"})
        assert r.status_code == 201, r.text
        ws = await srv.wait_ready("w")
        assert ws["state"] == "running"
        agent = ws["agents"][0]
        assert agent["lifecycle_state"] == "ready" and agent["status"] == "connected"
        r = await srv.client.post("/api/v1/workspaces/w/exec", json={"command": "python3 hello.py"})
        assert r.status_code == 200 and "hello" in r.json()["output"].lower()
        # a background daemon in its own session must die with the workspace
        r = await srv.client.post(
            "/api/v1/workspaces/w/exec",
            json={"command": "setsid sleep 300 & echo started", "timeout_s": 5},
        )
        assert r.status_code == 200
        assert len(_workspace_pids(ws["id"])) >= 2  # the agent and the sleep
        r = await srv.client.post("/api/v1/workspaces/w/stop")
        assert r.status_code == 200

        async def stopped():
            data = (await srv.client.get("/api/v1/workspaces/w")).json()
            return data["state"] == "stopped" and not _workspace_pids(ws["id"])

        await _eventually(stopped)
        r = await srv.client.post("/api/v1/workspaces/w/exec", json={"command": "true"})
        assert r.status_code == 409 and r.json()["code"] == "workspace_stopped"
        logs = (await srv.client.get("/api/v1/workspaces/w/logs")).json()["logs"]
        assert any("stop" in line["output"] for line in logs)


async def test_rebuild_yields_new_agent_ids(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template()
        await srv.client.post("/api/v1/workspaces", json={"template": "python", "name": "w"})
        first = (await srv.wait_ready("w"))["agents"][0]["id"]
        r = await srv.client.post("/api/v1/workspaces/w/rebuild")
        assert r.status_code == 200, r.text
        second = (await srv.wait_ready("w"))["agents"][0]["id"]
        assert second != first
        builds = (await srv.client.get("/api/v1/workspaces/w/builds")).json()
        assert [b["transition"] for b in builds] == ["start", "stop", "start"]


async def test_kill_9_agent_becomes_disconnected(tmp_path):
    settings = fast_settings(tmp_path)
    async with running_server(settings) as srv:
        await srv.push_template()
        await srv.client.post("/api/v1/workspaces", json={"template": "python", "name": "w"})
        ws = await srv.wait_ready("w")
        runtime = await srv.graph.backends["local"].inspect(
            _ref(ws)  # the backend knows the agent's pid
        )
        [pid] = runtime.agent_pids.values()
        os.kill(pid, signal.SIGKILL)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()

        async def disconnected():
            data = (await srv.client.get("/api/v1/workspaces/w")).json()
            return data["agents"][0]["status"] == "disconnected"

        await _eventually(disconnected, timeout=5)
        # within the ping interval plus the inactive-disconnect grace
        assert loop.time() - killed_at <= (
            settings.agent_ping_interval_s + settings.agent_inactive_disconnect_s + 1.0
        )


async def test_startup_script_failure_is_start_error(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template(FAILING)
        await srv.client.post("/api/v1/workspaces", json={"template": "broken", "name": "b"})
        ws = await srv.wait_ready("b")
        agent = ws["agents"][0]
        assert agent["lifecycle_state"] == "start_error"
        logs = await srv.graph.agents.logs(__import__("uuid").UUID(agent["id"]))
        assert any("about to fail" in line.output for line in logs)


async def test_concurrent_starts_produce_one_build(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template()
        await srv.client.post("/api/v1/workspaces", json={"template": "python", "name": "w"})
        await srv.wait_ready("w")
        await srv.client.post("/api/v1/workspaces/w/stop")

        async def is_stopped():
            return (await srv.client.get("/api/v1/workspaces/w")).json()["state"] == "stopped"

        await _eventually(is_stopped)
        results = await asyncio.gather(
            *(srv.client.post("/api/v1/workspaces/w/start") for _ in range(5))
        )
        assert all(r.status_code == 200 for r in results)
        build_ids = {r.json()["build"]["id"] for r in results}
        assert len(build_ids) == 1
        assert sum(r.json()["created"] for r in results) == 1
        stop = await srv.client.post("/api/v1/workspaces/w/stop")
        assert stop.status_code == 409  # a start is in progress: stop conflicts
        await srv.wait_ready("w")


async def test_cross_owner_access_is_404_and_bad_input_is_typed(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template()
        r = await srv.client.post("/api/v1/workspaces", json={"template": "python", "name": "w"})
        ws_id = r.json()["id"]
        member = await srv.user_client("mallory")
        async with member:
            for method, path in [
                ("GET", f"/api/v1/workspaces/{ws_id}"),
                ("POST", f"/api/v1/workspaces/{ws_id}/stop"),
                ("POST", f"/api/v1/workspaces/{ws_id}/exec"),
                ("DELETE", f"/api/v1/workspaces/{ws_id}"),
            ]:
                r = await member.request(method, path, json={"command": "id"})
                assert r.status_code == 404, (method, path, r.text)
            assert (await member.get("/api/v1/workspaces")).json() == []
            r = await member.post("/api/v1/templates", json={"source": "name: x"})
            assert r.status_code == 403
        r = await srv.client.post(
            "/api/v1/workspaces",
            json={"template": "python", "name": "v", "parameters": {"nope": "1"}},
        )
        assert r.status_code == 400 and "nope" in r.json()["details"]["field"]
        r = await srv.client.post("/api/v1/workspaces", json={"template": "missing", "name": "v"})
        assert r.status_code == 404
        r = await srv.client.post(
            "/api/v1/templates", json={"source": "name: t\nparameters:\n  - name: 1bad\n"}
        )
        assert r.status_code == 400 and r.json()["details"]["field"].startswith("parameters[0]")
        r = await srv.client.get("/api/v1/workspaces", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        await srv.wait_ready("w")


async def test_ttl_autostop(tmp_path):
    async with running_server(fast_settings(tmp_path)) as srv:
        await srv.push_template()
        r = await srv.client.post(
            "/api/v1/workspaces", json={"template": "python", "name": "w", "ttl_ms": 1500}
        )
        assert r.status_code == 201

        # A loaded machine may autostop the workspace before a poll sees it ready (1.5 s
        # is short): the start build must succeed, then the TTL stops it.
        async def autostopped():
            data = (await srv.client.get("/api/v1/workspaces/w")).json()
            return data["state"] == "stopped" and data["latest_build"]["reason"] == "autostop"

        await _eventually(autostopped, timeout=15)
        builds = (await srv.client.get("/api/v1/workspaces/w/builds")).json()
        start = next(b for b in builds if b["transition"] == "start")
        assert start["status"] == "succeeded"
        stop = next(b for b in builds if b["transition"] == "stop")
        assert stop["build_number"] == start["build_number"] + 1


def _ref(ws):
    import uuid

    from tether.workspaces.backends.base import WorkspaceRef

    return WorkspaceRef(
        workspace_id=uuid.UUID(ws["id"]), owner_name="admin", name=ws["name"], template_name=""
    )


async def test_agents_survive_a_server_restart_and_reconnect(tmp_path):
    settings = fast_settings(tmp_path)
    async with running_server(settings, stop_workspaces=False) as srv:
        await srv.push_template()
        await srv.client.post("/api/v1/workspaces", json={"template": "python", "name": "w"})
        before = await srv.wait_ready("w")
    # the server is gone; the agent process is not
    assert _workspace_pids(before["id"])
    async with running_server(settings) as srv:
        after = await srv.wait_ready("w")
        assert after["agents"][0]["id"] == before["agents"][0]["id"]
        assert after["agents"][0]["lifecycle_state"] == "ready"  # startup did not re-run
        import uuid

        agent_id = uuid.UUID(after["agents"][0]["id"])

        async def reconnected():
            row = await srv.graph.agents.get(agent_id)
            return row.disconnected_at is not None and row.last_connected_at > row.disconnected_at

        await _eventually(reconnected, timeout=10)  # the session really came back
        r = await srv.client.post("/api/v1/workspaces/w/exec", json={"command": "echo back"})
        assert r.status_code == 200 and r.json()["output"] == "back\n"
