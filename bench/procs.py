"""Benchmarks against real ``tether server`` processes (``tether.demo.LocalServer``): start
one or more on a shared database, drive turns through the HTTP API and each chat's SSE
stream, read a server's RSS / fds (``/proc``) and event-loop tasks (``/metrics``).

Used by ``bench/memory.py`` and ``bench/scaleout.py``: unlike ``bench/turns.py`` the client
is a separate process, so the figures are the server's alone, but the model and tool time
of a turn cannot be timed from outside: these benches report wall time (with the
zero-latency model, wall = overhead + the ``execute true`` round trip)."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.benchlib import IDLE, process_figures
from tests.support.cli_server import start_server as start_cli_server
from tether.demo import PYTHON_TEMPLATE, LocalServer

TURN_TIMEOUT_S = 120.0
MODEL = "python:tether.llm.scripted:zero_latency_execute_model"
# Timings of a loaded production-like server (as bench/turns.py uses), not the tests' fast ones.
BASE_ENV = {
    "TETHER_MODEL": MODEL,
    "TETHER_AGENT_PING_INTERVAL_S": "2",
    "TETHER_AGENT_UNREACHABLE_AFTER_S": "6",
    "TETHER_AGENT_INACTIVE_DISCONNECT_S": "6",
    "TETHER_WORKER_POLL_S": "1",
    "TETHER_TTL_SWEEP_S": "5",
}


def start_server(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    cli_config: Path | None = None,
    health_timeout: float = 60.0,
) -> LocalServer:
    """A started ``tether server``. ``cli_config``: the admin config another server of the
    same database bootstrapped (replicas do not bootstrap again)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if cli_config is not None:
        shutil.copy(cli_config, data_dir / "cli.json")
    return start_cli_server(
        data_dir, env={**BASE_ENV, **(env or {})}, health_timeout=health_timeout
    )


def server_pid(srv: LocalServer) -> int:
    proc = srv._proc  # the bench reads its /proc figures
    assert proc is not None
    return proc.pid


def api_client(srv: LocalServer, *, max_connections: int = 200) -> httpx.AsyncClient:
    token = json.loads((srv.data_dir / "cli.json").read_text())["token"]
    return httpx.AsyncClient(
        base_url=srv.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=100),
    )


async def push_template(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/templates", json={"source": PYTHON_TEMPLATE.read_text()})
    r.raise_for_status()


async def figures(srv: LocalServer, api: httpx.AsyncClient) -> dict[str, float]:
    """The server process's RSS (MB), open fds, threads and event-loop tasks."""
    out: dict[str, float] = process_figures(server_pid(srv))
    text = (await api.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("tether_event_loop_tasks "):
            out["tasks"] = float(line.split()[1])
        elif line.startswith("tether_agent_sessions_connected "):
            out["agent_sessions"] = float(line.split()[1])
    return out


async def _until_idle(api: httpx.AsyncClient, chat_id: uuid.UUID, after: str) -> str:
    """Follow the chat's stream from ``after`` until a final status; that status. Bounded by
    ``TURN_TIMEOUT_S`` (the stream's keep-alives would otherwise hold a stuck turn forever).

    Opened after the message was accepted (the chat is then pending), so the first idle
    status the stream shows — its snapshot or a live event — is this turn's end."""
    async with asyncio.timeout(TURN_TIMEOUT_S):
        return await _follow_until_idle(api, chat_id, after)


async def _follow_until_idle(api: httpx.AsyncClient, chat_id: uuid.UUID, after: str) -> str:
    event = ""
    async with api.stream(
        "GET", f"/api/v1/chats/{chat_id}/stream", headers={"Last-Event-ID": after}
    ) as stream:
        stream.raise_for_status()
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "status":
                status = json.loads(line[5:]).get("status")
                if status in IDLE:
                    return str(status)
            elif not line:
                event = ""
    raise RuntimeError(f"chat {chat_id}: stream ended before the turn did")


async def new_chat_turn(api: httpx.AsyncClient, workspace_id: uuid.UUID) -> uuid.UUID:
    """Create a chat bound to the workspace; returns once its first turn ended ``waiting``."""
    r = await api.post(
        "/api/v1/chats", json={"content": "turn 1", "workspace_id": str(workspace_id)}
    )
    r.raise_for_status()
    chat_id = uuid.UUID(r.json()["id"])
    status = await _until_idle(api, chat_id, "0.0")
    if status != "waiting":
        raise RuntimeError(f"chat {chat_id}: first turn ended {status}")
    return chat_id


async def chats_with_first_turn(
    apis: Sequence[httpx.AsyncClient],
    workspaces: list[uuid.UUID],
    n: int,
    *,
    concurrency: int,
) -> list[uuid.UUID]:
    """``n`` chats, ``concurrency`` created at a time: chat ``i`` through ``apis[i % len(apis)]``,
    bound to ``workspaces[i % len(workspaces)]``, once its first turn ended ``waiting``; in
    the order of ``i``."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> uuid.UUID:
        async with gate:
            return await new_chat_turn(apis[i % len(apis)], workspaces[i % len(workspaces)])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def turn(api: httpx.AsyncClient, chat_id: uuid.UUID) -> bool:
    """One message to an idle chat and its turn to the end; True when it ended ``waiting``."""
    r = await api.post(f"/api/v1/chats/{chat_id}/messages", json={"content": "go"})
    r.raise_for_status()
    message = r.json().get("message") or {}
    return await _until_idle(api, chat_id, f"{message.get('seq', 0)}.0") == "waiting"


def summary(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())
