""" "Start means running" (issue #9 §5): starting a workspace whose build says running but
whose agent is dead rebuilds it instead of answering "already started".

An agent is **dead** when its status (computed from the database, so every replica agrees)
is ``timeout``, or ``disconnected`` for at least ``dead_after_s`` — the liveness bound: a
session that drops and comes straight back (a network blip, a server restart) is not dead,
a killed or frozen agent is. An agent disconnected for less than that is watched until it
either reconnects or the bound passes (polling the rows; bounded by ``dead_after_s``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tether.clock import Clock, as_utc
from tether.domain.agent import AgentStatus, WorkspaceAgent
from tether.domain.workspace import Build
from tether.workspaces.status import compute_agent_status, disconnected_since

_POLL_S = 0.1


class StartAction(enum.StrEnum):
    """What a start request did."""

    STARTED = "started"  # a new start build (the workspace was stopped, failed, …)
    IN_PROGRESS = "in_progress"  # a start build was already running: this is it
    ALREADY_RUNNING = "already_running"  # running, and its agents are alive
    REBUILT = "rebuilt"  # running on paper, agent dead: stopped and started again


@dataclass(frozen=True)
class StartOutcome:
    build: Build
    action: StartAction
    created: bool
    message: str
    dead_agents: tuple[str, ...] = ()


def agent_dead(
    agent: WorkspaceAgent, now: datetime, inactive_s: float, dead_after_s: float
) -> bool:
    """Dead for sure (see the module docstring); False also for "not yet known"."""
    status = compute_agent_status(agent, now, inactive_s)
    if status is AgentStatus.TIMEOUT:
        return True
    if status is not AgentStatus.DISCONNECTED:
        return False
    since = as_utc(disconnected_since(agent, now, inactive_s))
    now_utc = as_utc(now)
    assert now_utc is not None
    return since is None or (now_utc - since).total_seconds() >= dead_after_s


def agent_settled(agent: WorkspaceAgent, now: datetime, inactive_s: float) -> bool:
    """Connected or still connecting: nothing to decide."""
    status = compute_agent_status(agent, now, inactive_s)
    return status in (AgentStatus.CONNECTED, AgentStatus.CONNECTING)


async def dead_agents(
    build_id: uuid.UUID,
    load: Callable[[uuid.UUID], Awaitable[Sequence[WorkspaceAgent]]],
    clock: Clock,
    *,
    inactive_s: float,
    dead_after_s: float,
) -> list[WorkspaceAgent]:
    """The build's dead agents, after watching any recently disconnected one for at most
    ``dead_after_s`` (clock time)."""
    deadline = clock.monotonic() + dead_after_s
    while True:
        agents = list(await load(build_id))
        now = clock.now()
        dead = [a for a in agents if agent_dead(a, now, inactive_s, dead_after_s)]
        if dead:
            return dead
        if all(agent_settled(a, now, inactive_s) for a in agents):
            return []
        if clock.monotonic() >= deadline:
            return []  # not dead by the bound: give it the benefit of the doubt
        await clock.sleep(_POLL_S)
