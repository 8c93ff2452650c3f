"""docs/behaviour.md §4.1: agent connection status computed from timestamps, in rule order."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from tether.domain.agent import AgentStatus, WorkspaceAgent
from tether.testing.clock import DEFAULT_START
from tether.testing.fake_binding_store import agent_row
from tether.workspaces.status import compute_agent_status, disconnected_since, is_agent_unreachable

NOW = DEFAULT_START
INACTIVE = 6.0


def agent(**changes: Any) -> WorkspaceAgent:
    return replace(agent_row(uuid.uuid4(), uuid.uuid4(), now=NOW), **changes)


def never_connected(created_ago: float, timeout_s: int) -> WorkspaceAgent:
    return agent(
        first_connected_at=None,
        last_connected_at=None,
        created_at=ago(created_ago),
        connection_timeout_s=timeout_s,
    )


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_never_connected_within_timeout_is_connecting() -> None:
    a = agent(first_connected_at=None, last_connected_at=None, created_at=ago(30))
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.CONNECTING
    assert not is_agent_unreachable(a, NOW, INACTIVE)


def test_never_connected_past_timeout_is_timeout() -> None:
    a = agent(
        first_connected_at=None,
        last_connected_at=None,
        created_at=ago(121),
        connection_timeout_s=120,
    )
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.TIMEOUT
    assert is_agent_unreachable(a, NOW, INACTIVE)


def test_timeout_boundary_is_exclusive() -> None:
    a = agent(
        first_connected_at=None,
        last_connected_at=None,
        created_at=ago(120),
        connection_timeout_s=120,
    )
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.CONNECTING


def test_zero_connection_timeout_never_times_out() -> None:
    a = agent(
        first_connected_at=None,
        last_connected_at=None,
        created_at=ago(86400),
        connection_timeout_s=0,
    )
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.CONNECTING


def test_disconnect_after_last_ping_is_disconnected_at_drop_time() -> None:
    a = agent(last_connected_at=ago(600), disconnected_at=ago(540))
    assert compute_agent_status(a, NOW, 30) is AgentStatus.DISCONNECTED
    assert disconnected_since(a, NOW, 30) == ago(540)
    assert is_agent_unreachable(a, NOW, 30)


def test_reconnect_after_drop_is_connected() -> None:
    a = agent(last_connected_at=ago(1), disconnected_at=ago(60))
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.CONNECTED
    assert disconnected_since(a, NOW, INACTIVE) is None


def test_silent_agent_is_disconnected_since_last_ping() -> None:
    a = agent(last_connected_at=ago(7))
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.DISCONNECTED
    assert disconnected_since(a, NOW, INACTIVE) == ago(7)


@pytest.mark.parametrize("ping_ago", [0.0, 5.9, 6.0])
def test_recent_ping_is_connected(ping_ago: float) -> None:
    a = agent(last_connected_at=ago(ping_ago))
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.CONNECTED
    assert not is_agent_unreachable(a, NOW, INACTIVE)


def test_naive_datetimes_are_read_as_utc() -> None:
    """SQLite drops tzinfo; the computation must not crash or shift."""
    a = agent(
        created_at=ago(300).replace(tzinfo=None),
        first_connected_at=ago(300).replace(tzinfo=None),
        last_connected_at=ago(1).replace(tzinfo=None),
    )
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.CONNECTED
    assert compute_agent_status(a, NOW.replace(tzinfo=None), INACTIVE) is AgentStatus.CONNECTED


def test_first_connection_without_ping_counts_from_first_connection() -> None:
    a = agent(first_connected_at=ago(2), last_connected_at=None)
    assert compute_agent_status(a, NOW, INACTIVE) is AgentStatus.CONNECTED
    b = agent(first_connected_at=ago(20), last_connected_at=None)
    assert compute_agent_status(b, NOW, INACTIVE) is AgentStatus.DISCONNECTED
