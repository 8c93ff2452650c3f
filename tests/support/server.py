"""A real tether server (uvicorn on a loopback port) inside the test's event loop, with
scaled-down timings, plus an authenticated httpx client. Every workspace still running at
teardown is stopped, so no agent process outlives its test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tether.api.app import create_app
from tether.server import background_jobs, bootstrap
from tether.settings import Settings
from tether.wiring import Graph, build_graph

REPO = Path(__file__).resolve().parents[2]
PYTHON_TEMPLATE = REPO / "examples" / "templates" / "python.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fast_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "port": free_port(),
        "cli_config": tmp_path / "cli.json",
        "agent_ping_interval_s": 0.2,
        "agent_inactive_disconnect_s": 1.0,
        "agent_stop_grace_s": 1.0,
        "provisioner_poll_s": 0.1,
        "build_poll_s": 0.1,
        "ttl_sweep_s": 0.2,
        "worker_poll_s": 0.1,
        # test templates run fixture scripts (MCP servers) from the repo inside the sandbox
        "sandbox_ro_paths": [REPO / "tests" / "fixtures"],
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningServer:
    graph: Graph
    url: str
    token: str
    client: httpx.AsyncClient

    async def push_template(self, source: str | None = None) -> dict[str, Any]:
        text = source if source is not None else PYTHON_TEMPLATE.read_text()
        r = await self.client.post("/api/v1/templates", json={"source": text})
        r.raise_for_status()
        return dict(r.json())

    async def user_client(self, name: str, role: str = "member") -> httpx.AsyncClient:
        user = await self.graph.users.create_user(name, role)
        token, _ = await self.graph.users.create_token(user.id, "test")
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    async def wait_ready(self, ref: str, *, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until the workspace's first agent has a final lifecycle state."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            data = (await self.client.get(f"/api/v1/workspaces/{ref}")).json()
            agents = data.get("agents") or []
            if agents and agents[0]["lifecycle_state"] not in ("created", "starting"):
                if agents[0]["status"] == "connected":
                    return dict(data)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"workspace {ref} not ready in {timeout}s: {data}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings, *, stop_workspaces: bool = True, **graph_kwargs: Any
) -> AsyncIterator[RunningServer]:
    graph = await build_graph(settings, **graph_kwargs)
    token = await bootstrap(graph)
    if token is None:  # a restart on the same data: reuse the admin's CLI token
        import json

        token = json.loads(settings.cli_config.read_text())["token"]
    app = create_app(graph, background=background_jobs(graph))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    url = settings.server_url()
    client = httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "test server did not start"
        yield RunningServer(graph, url, token, client)
    finally:
        await client.aclose()
        # Stop the server (and with it the provisioner) first, so no build in flight can
        # launch an agent after the workspaces were stopped.
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        if stop_workspaces:
            # every workspace that has files, deleted ones included: no process may leak
            for ws_id in _workspace_ids(settings):
                for backend in graph.backends.values():
                    with contextlib.suppress(Exception):
                        await _stop_backend(backend, ws_id)
        await graph.aclose()


def _workspace_ids(settings: Settings) -> list[uuid.UUID]:
    ids = []
    for root in (settings.data_dir / "workspaces", settings.data_dir / "docker"):
        for entry in root.iterdir() if root.is_dir() else []:
            with contextlib.suppress(ValueError):
                ids.append(uuid.UUID(entry.name))
    return ids


async def _stop_backend(backend: Any, workspace_id: uuid.UUID) -> None:
    from tether.workspaces.backends.base import WorkspaceRef

    async def sink(_level: str, _line: str) -> None:
        return None

    ref = WorkspaceRef(workspace_id=workspace_id, owner_name="", name="", template_name="")
    await asyncio.wait_for(backend.stop(ref, sink), 15)
