""" "Start means running" decisions (issue #9 §5) on agent rows, with an injected clock:
which agents are dead, and how long a recently dropped session is given to come back."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from tether.domain.agent import Lifecycle, WorkspaceAgent
from tether.testing.clock import FakeClock, settle
from tether.workspaces.startrunning import agent_dead, dead_agents

INACTIVE_S = 6.0
DEAD_AFTER_S = 3.0


def agent(now: datetime, **times: datetime | None) -> WorkspaceAgent:
    values: dict[str, object] = {
        "first_connected_at": now - timedelta(seconds=60),
        "last_connected_at": now - timedelta(seconds=0.5),
        "disconnected_at": None,
    }
    values.update(times)
    return WorkspaceAgent(
        id=uuid.uuid4(),
        build_id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        name="main",
        display_order=0,
        chat=True,
        parent_id=None,
        created_at=now - timedelta(seconds=120),
        connection_timeout_s=120,
        lifecycle_state=Lifecycle.READY,
        lifecycle_changed_at=now - timedelta(seconds=60),
        **values,  # type: ignore[arg-type]
    )


def test_dead_is_disconnected_past_the_bound_or_timed_out() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0)
    alive = agent(now)
    blip = agent(
        now,
        last_connected_at=now - timedelta(seconds=1.5),
        disconnected_at=now - timedelta(seconds=1),
    )
    killed = agent(
        now,
        last_connected_at=now - timedelta(seconds=DEAD_AFTER_S + 0.5),
        disconnected_at=now - timedelta(seconds=DEAD_AFTER_S),
    )
    silent = agent(now, last_connected_at=now - timedelta(seconds=INACTIVE_S + 1))
    never = agent(now, first_connected_at=None, last_connected_at=None)
    never_timed_out = dataclasses.replace(never, created_at=now - timedelta(seconds=121))
    assert not agent_dead(alive, now, INACTIVE_S, DEAD_AFTER_S)
    assert not agent_dead(blip, now, INACTIVE_S, DEAD_AFTER_S)
    assert agent_dead(killed, now, INACTIVE_S, DEAD_AFTER_S)
    assert agent_dead(silent, now, INACTIVE_S, DEAD_AFTER_S)
    assert not agent_dead(never, now, INACTIVE_S, DEAD_AFTER_S)  # still connecting
    assert agent_dead(never_timed_out, now, INACTIVE_S, DEAD_AFTER_S)


async def test_a_recent_drop_is_watched_until_the_bound_then_dead() -> None:
    clock = FakeClock()
    row = agent(
        clock.now(),
        last_connected_at=clock.now() - timedelta(seconds=0.5),
        disconnected_at=clock.now(),
    )
    loads = 0

    async def load(_build_id: uuid.UUID) -> Sequence[WorkspaceAgent]:
        nonlocal loads
        loads += 1
        return [row]

    task = asyncio.create_task(
        dead_agents(row.build_id, load, clock, inactive_s=INACTIVE_S, dead_after_s=DEAD_AFTER_S)
    )
    await clock.wait_for_sleepers()
    clock.advance(1.0)
    await settle()
    assert not task.done()
    for _ in range(40):
        clock.advance(0.1)
        await settle()
    assert task.done()
    assert task.result() == [row]
    assert loads > 1


async def test_a_session_that_comes_back_is_not_dead() -> None:
    clock = FakeClock()
    rows = [
        agent(
            clock.now(),
            last_connected_at=clock.now() - timedelta(seconds=0.5),
            disconnected_at=clock.now(),
        )
    ]

    async def load(_build_id: uuid.UUID) -> Sequence[WorkspaceAgent]:
        return rows

    task = asyncio.create_task(
        dead_agents(uuid.uuid4(), load, clock, inactive_s=INACTIVE_S, dead_after_s=DEAD_AFTER_S)
    )
    await clock.wait_for_sleepers()
    clock.advance(0.5)
    rows[0] = dataclasses.replace(
        rows[0], last_connected_at=clock.now(), first_connected_at=clock.now()
    )
    clock.advance(0.1)
    await settle()
    assert task.done() and task.result() == []
