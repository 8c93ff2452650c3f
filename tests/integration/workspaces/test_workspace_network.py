"""Network in sandboxed workspaces: usable by default (package installs), absent for a
template with ``network: false`` — whose agent still connects, through the backend's relay."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from support.server import RunningServer, fast_settings, running_server
from tether.workspaces.backends.base import WorkspaceRef
from tether.workspaces.backends.procs import start_ticks

pytestmark = pytest.mark.integration

TEMPLATE = """
name: offline
network: {network}
directory: project
startup_script: echo started > started.txt
"""


def _probe(port: int) -> str:
    # Reaching the server's own port over TCP stands in for "the network".
    return (
        'python3 -c "import socket\n'
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), 2).close(); print('NET-OK')\n"
        "except OSError as exc:\n"
        "    print('NET-FAIL', exc)\""
    )


@pytest.mark.parametrize("network", [True, False])
async def test_network_follows_the_template(tmp_path: Path, network: bool) -> None:
    settings = fast_settings(tmp_path)
    async with running_server(settings) as srv:
        await srv.push_template(TEMPLATE.format(network=str(network).lower()))
        r = await srv.client.post("/api/v1/workspaces", json={"template": "offline", "name": "o"})
        assert r.status_code == 201, r.text
        ws = await srv.wait_ready("o", timeout=30)  # the session works either way
        assert ws["agents"][0]["lifecycle_state"] == "ready"
        r = await srv.client.post(
            "/api/v1/workspaces/o/exec", json={"command": _probe(settings.port)}
        )
        assert r.status_code == 200, r.text
        output = r.json()["output"]
        assert ("NET-OK" in output) is network, output
        wdir = settings.data_dir / "workspaces" / ws["id"]
        relay_log = wdir / "relay.log"
        assert relay_log.exists() is not network
        r = await srv.client.post("/api/v1/workspaces/o/stop")
        assert r.status_code in (200, 202), r.text
        await _wait_stopped(srv, "o")
        backend = srv.graph.backends["local"]
        ref = WorkspaceRef(uuid.UUID(ws["id"]), "", "", "")
        assert not (await backend.inspect(ref)).running
        assert not _relay_running(ws["id"])  # stop takes the relay down too


def _relay_running(ws_id: str) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tether.workspaces.backends.relay" in cmdline and ws_id.encode() in cmdline:
            return start_ticks(int(entry)) is not None
    return False


async def _wait_stopped(srv: RunningServer, ref: str) -> None:
    data: dict[str, object] = {}
    for _ in range(300):
        data = (await srv.client.get(f"/api/v1/workspaces/{ref}")).json()
        if data.get("state") == "stopped":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"workspace {ref} did not stop: {data}")
