"""What the benches share: waiting for a ready workspace, waiting for a turn's end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

import httpx

IDLE = ("waiting", "error")  # the statuses a chat ends a turn in


async def wait_ready(
    api: httpx.AsyncClient, name: str, *, timeout_s: float, poll_s: float = 0.25
) -> uuid.UUID:
    """The workspace's id once its first agent is connected and ready; RuntimeError when the
    agent's lifecycle ends otherwise or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        data = (await api.get(f"/api/v1/workspaces/{name}")).json()
        agents = data.get("agents") or []
        if agents and agents[0]["status"] == "connected":
            if agents[0]["lifecycle_state"] == "ready":
                return uuid.UUID(data["id"])
            if agents[0]["lifecycle_state"] not in ("created", "starting"):
                raise RuntimeError(f"workspace {name}: agent {agents[0]['lifecycle_state']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workspace {name} not ready in {timeout_s:g}s: {data}")
        await asyncio.sleep(poll_s)


async def final_status(
    queue: asyncio.Queue[Any], *, timeout_s: float, early: Iterable[Any] = ()
) -> str:
    """The status a chat's turn ended in: from the events already received (``early``), else
    the next idle status on its event ``queue``. A turn publishes status(running) first, then
    its final status last; the service's own status events (pending) never carry an idle one."""
    for ev in early:
        if ev.event == "status" and ev.data.get("status") in IDLE:
            return str(ev.data["status"])
    async with asyncio.timeout(timeout_s):
        while True:
            ev = await queue.get()
            if ev.event == "status" and ev.data.get("status") in IDLE:
                return str(ev.data["status"])
