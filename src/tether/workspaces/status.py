"""Agent connection status, computed from timestamps (docs/behaviour.md §4.1).

The status is never stored: the agent session records ``first_connected_at``,
``last_connected_at`` (pings) and ``disconnected_at`` (drop), and readers compute the status
for a given ``now`` and the deployment's inactive-disconnect timeout.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from tether.clock import as_utc
from tether.domain.agent import AgentStatus


class AgentTimes(Protocol):
    """The fields the computation reads (``WorkspaceAgent`` has them)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def first_connected_at(self) -> datetime | None: ...
    @property
    def last_connected_at(self) -> datetime | None: ...
    @property
    def disconnected_at(self) -> datetime | None: ...
    @property
    def connection_timeout_s(self) -> int: ...


def compute_agent_status(
    agent: AgentTimes, now: datetime, inactive_disconnect_s: float
) -> AgentStatus:
    """Status of ``agent`` at ``now``, evaluated in the order of docs/behaviour.md §4.1:

    1. never connected: ``timeout`` if ``connection_timeout_s`` > 0 and the agent is older
       than that, else ``connecting``;
    2. ``disconnected_at`` later than the last connection: ``disconnected``;
    3. no ping for longer than ``inactive_disconnect_s``: ``disconnected``;
    4. otherwise ``connected``.

    Naive datetimes (SQLite drops tzinfo) are read as UTC.
    """
    status, _ = _evaluate(agent, now, inactive_disconnect_s)
    return status


def disconnected_since(
    agent: AgentTimes, now: datetime, inactive_disconnect_s: float
) -> datetime | None:
    """When a ``disconnected`` agent was last known alive (``disconnected_at`` for a
    recorded drop, else its last ping); ``None`` for any other status."""
    _, since = _evaluate(agent, now, inactive_disconnect_s)
    return since


def is_agent_unreachable(agent: AgentTimes, now: datetime, inactive_disconnect_s: float) -> bool:
    """True for ``disconnected`` or ``timeout``; ``connecting`` counts as reachable (normal
    right after a build). chatd does not consult this on a connection-cache hit: there the
    request itself proves liveness (docs/behaviour.md §4.4)."""
    status = compute_agent_status(agent, now, inactive_disconnect_s)
    return status in (AgentStatus.DISCONNECTED, AgentStatus.TIMEOUT)


# Timeouts at least this long never expire (timedelta overflows around 2.7e12 s).
_NEVER_S = 10**12


def _evaluate(
    agent: AgentTimes, now: datetime, inactive_disconnect_s: float
) -> tuple[AgentStatus, datetime | None]:
    now_utc = as_utc(now)
    assert now_utc is not None
    first = as_utc(agent.first_connected_at)
    if first is None:
        created = as_utc(agent.created_at)
        assert created is not None
        timeout = agent.connection_timeout_s
        if 0 < timeout < _NEVER_S and now_utc - created > timedelta(seconds=timeout):
            return AgentStatus.TIMEOUT, None
        return AgentStatus.CONNECTING, None
    # A row with a first connection but no ping yet counts from the first connection.
    last = as_utc(agent.last_connected_at) or first
    dropped = as_utc(agent.disconnected_at)
    if dropped is not None and dropped > last:
        return AgentStatus.DISCONNECTED, dropped
    if now_utc - last > timedelta(seconds=inactive_disconnect_s):
        return AgentStatus.DISCONNECTED, last
    return AgentStatus.CONNECTED, None
