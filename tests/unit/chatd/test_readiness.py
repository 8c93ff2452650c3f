"""The agent readiness wait of the lifecycle tools (docs/behaviour.md §5.3.1, CW-1…CW-5) and
the agent report after a build (CW-7/CW-21 at unit level), with a fake agent store and dialer.

tether adaptations: there is no "nil dial function" or "nil DB" configuration. CW-4 becomes
``dial=False`` (phase 1 skipped, as on the idempotency path for a connected agent); CW-5
becomes "lifecycle read errors are ignored and polling goes on" (the phase-2
rule), since tether's readiness always has its database. CW-2's "context already
canceled" is the reachability budget (``agent_ready_timeout_s``) running out.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from tether.chatd.binding import AgentRow
from tether.chatd.tools.base import ChatdDeps
from tether.chatd.tools.readiness import agent_readiness, build_agent_report
from tether.clock import SystemClock
from tether.db.pubsub import InProcessBus
from tether.domain.agent import Lifecycle
from tether.settings import Settings

NOW = datetime(2026, 4, 1, tzinfo=UTC)
BUILD = uuid.uuid4()


def agent(name: str = "main", *, chat: bool = False, order: int = 0) -> AgentRow:
    return AgentRow(
        id=uuid.uuid4(),
        build_id=BUILD,
        workspace_id=uuid.uuid4(),
        name=name,
        display_order=order,
        chat=chat,
        parent_id=None,
        created_at=NOW,
        first_connected_at=NOW,
        last_connected_at=NOW,
        disconnected_at=None,
        connection_timeout_s=120,
        lifecycle_state=Lifecycle.STARTING,
        lifecycle_changed_at=NOW,
        dial_address="127.0.0.1:1",
        dial_secret="s",
    )


class FakeAgents:
    """``find`` answers the next scripted lifecycle state (the last one repeats); an
    exception in the script is raised instead (a failing read)."""

    def __init__(self, rows: list[AgentRow], states: list[Lifecycle | Exception]) -> None:
        self.rows = rows
        self.states = list(states)
        self.reads = 0

    async def find(self, agent_id: uuid.UUID) -> AgentRow | None:
        self.reads += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, Exception):
            raise state
        row = next((r for r in self.rows if r.id == agent_id), None)
        return None if row is None else replace(row, lifecycle_state=state)

    async def for_build(self, build_id: uuid.UUID) -> list[AgentRow]:
        return [r for r in self.rows if r.build_id == build_id]


class FakeConn:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


class FakeDialer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.dials: list[uuid.UUID] = []
        self.conns: list[FakeConn] = []

    async def dial(self, agent: AgentRow, *, headers: dict[str, str]) -> FakeConn:
        self.dials.append(agent.id)
        if self.error is not None:
            raise self.error
        conn = FakeConn()
        self.conns.append(conn)
        return conn


def deps(agents: FakeAgents, dialer: FakeDialer) -> ChatdDeps:
    settings = Settings(
        agent_ready_timeout_s=0.3,
        agent_ready_attempt_s=0.1,
        agent_ready_retry_s=0.02,
        startup_script_timeout_s=0.5,
    )
    unused = cast(Any, None)  # readiness touches none of the other deps
    return ChatdDeps(
        settings=settings,
        clock=SystemClock(),
        bus=InProcessBus(),
        chats=unused,
        agents=cast(Any, agents),
        workspace_store=unused,
        template_store=unused,
        workspaces=unused,
        users=unused,
        hub=unused,
        dialer=dialer,
    )


async def test_cw1_agent_connects_and_lifecycle_ready_adds_no_fields() -> None:
    row = agent()
    agents = FakeAgents([row], [Lifecycle.STARTING, Lifecycle.STARTING, Lifecycle.READY])
    dialer = FakeDialer()
    assert await agent_readiness(deps(agents, dialer), row, dial=True) == {}
    assert dialer.dials == [row.id] and dialer.conns[0].closed  # a probe, released at once


async def test_cw2_agent_never_reachable_is_not_ready_and_skips_phase_2() -> None:
    row = agent()
    agents = FakeAgents([row], [Lifecycle.START_ERROR])
    dialer = FakeDialer(ConnectionRefusedError("connection refused"))
    result = await agent_readiness(deps(agents, dialer), row, dial=True)
    assert result == {"agent_status": "not_ready", "agent_error": "connection refused"}
    assert len(dialer.dials) >= 2  # retried within the budget


async def test_cw3_agent_connects_but_startup_fails() -> None:
    row = agent()
    dialer = FakeDialer()
    result = await agent_readiness(
        deps(FakeAgents([row], [Lifecycle.START_ERROR]), dialer), row, dial=True
    )
    assert result == {
        "startup_scripts": "startup_scripts_failed",
        "lifecycle_state": "start_error",
    }
    assert dialer.dials == [row.id]


async def test_cw4_without_the_reachability_phase_no_dial_happens() -> None:
    row = agent()
    dialer = FakeDialer(ConnectionRefusedError("would fail"))
    result = await agent_readiness(
        deps(FakeAgents([row], [Lifecycle.READY]), dialer), row, dial=False
    )
    assert result == {} and dialer.dials == []


async def test_cw5_lifecycle_read_errors_are_ignored_and_polling_goes_on() -> None:
    row = agent()
    agents = FakeAgents([row], [RuntimeError("db down"), RuntimeError("db down"), Lifecycle.READY])
    assert await agent_readiness(deps(agents, FakeDialer()), row, dial=False) == {}
    assert agents.reads == 3


async def test_startup_scripts_still_running_at_the_deadline_is_a_timeout() -> None:
    row = agent()
    result = await agent_readiness(
        deps(FakeAgents([row], [Lifecycle.STARTING]), FakeDialer()), row, dial=False
    )
    assert result == {"startup_scripts": "startup_scripts_timeout"}


async def test_cw21_cw7_agent_report_no_agent_and_selection_error_never_dial() -> None:
    dialer = FakeDialer()
    assert await build_agent_report(deps(FakeAgents([], [Lifecycle.READY]), dialer), BUILD) == {
        "agent_status": "no_agent"
    }
    twins = [agent("left", chat=True), agent("right", chat=True, order=1)]
    report = await build_agent_report(deps(FakeAgents(twins, [Lifecycle.READY]), dialer), BUILD)
    assert report["agent_status"] == "selection_error"
    assert "left, right" in report["agent_error"]
    assert dialer.dials == []


async def test_cw6_agent_report_targets_the_chat_true_agent() -> None:
    dev, chat = agent("dev"), agent("dev-chat", chat=True, order=1)
    dialer = FakeDialer()
    report = await build_agent_report(
        deps(FakeAgents([dev, chat], [Lifecycle.READY]), dialer), BUILD
    )
    assert report == {} and dialer.dials == [chat.id]
