"""Fixtures that run real ``python -m tether.agent`` processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.agent_procs import RunningAgent, start_agent, stop_agent
from tether.agentconn import AgentClient


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[RunningAgent]:
    running = await start_agent(tmp_path)
    try:
        yield running
    finally:
        await stop_agent(running.proc)


@pytest.fixture
async def client(agent: RunningAgent) -> AsyncIterator[AgentClient]:
    c = agent.client()
    try:
        yield c
    finally:
        await c.aclose()
