"""Waiting for a bench workspace's agent to be ready, shared by the benches."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx


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
