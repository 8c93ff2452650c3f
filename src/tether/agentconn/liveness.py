"""Which agents are known to be unreachable, as told by their session (DESIGN §7 Liveness).

The agent session (``api/agent_session.py``) proves an agent alive: frames flow both ways
every ping interval, and when none has arrived from the agent for ``agent_unreachable_after_s``
the session marks the agent **down** here (and publishes it on the bus for other replicas,
which feed their own :class:`AgentLiveness` through :func:`follow_liveness`). A later session
of the same agent marks it **up** again.

Being down does three things, all in this process and at once:

* every in-flight request of an :class:`~tether.agentconn.client.AgentClient` to that agent
  fails with :class:`~tether.errors.AgentUnreachable` (it races its request against
  :meth:`AgentLiveness.signal`);
* a new dial to it fails at once instead of waiting for a health check that never answers;
* the listeners (the chat worker: evict cached connections) are called.

This is a hint layered on top of the request deadlines, never the only bound: a request to
an agent nobody marked down still ends at its own deadline.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

LIVENESS_CHANNEL = "agent_liveness"
"""Bus channel: ``{"type": "down" | "up", "agent_id": "<uuid>", "reason": "..."}``."""

Listener = Callable[[uuid.UUID, str], None]


@dataclass
class _Entry:
    signal: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""


class AgentLiveness:
    """Per-agent down/up state with an event per "up epoch" (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, _Entry] = {}
        self._listeners: list[Listener] = []

    def signal(self, agent_id: uuid.UUID) -> asyncio.Event:
        """The event that is set when the agent goes down (already set if it is down now).
        A client keeps the event of the epoch it was created in: once the agent is up again
        its old clients stay failed, new ones get a fresh event."""
        entry = self._entries.get(agent_id)
        if entry is None:
            entry = self._entries[agent_id] = _Entry()
        return entry.signal

    def is_down(self, agent_id: uuid.UUID) -> bool:
        entry = self._entries.get(agent_id)
        return entry is not None and entry.signal.is_set()

    def reason(self, agent_id: uuid.UUID) -> str:
        entry = self._entries.get(agent_id)
        return entry.reason if entry is not None else ""

    def mark_down(self, agent_id: uuid.UUID, reason: str) -> bool:
        """Fail every waiter of the agent; True when it was not down already."""
        entry = self._entries.get(agent_id)
        if entry is None:
            entry = self._entries[agent_id] = _Entry()
        if entry.signal.is_set():
            return False
        entry.reason = reason
        entry.signal.set()
        for listener in list(self._listeners):
            try:
                listener(agent_id, reason)
            except Exception:  # a listener bug must not keep the others from hearing it
                log.exception("liveness listener failed")
        return True

    def mark_up(self, agent_id: uuid.UUID) -> None:
        """The agent has a working session again: forget it was down."""
        entry = self._entries.get(agent_id)
        if entry is not None and entry.signal.is_set():
            del self._entries[agent_id]  # the next signal() starts a fresh epoch

    def forget_all_down(self) -> None:
        """Bus events may have been lost (a reconnect): stop failing dials on a stale mark;
        request deadlines still bound every request."""
        for agent_id in [a for a, e in self._entries.items() if e.signal.is_set()]:
            del self._entries[agent_id]

    def add_listener(self, listener: Listener) -> None:
        """``listener(agent_id, reason)`` runs (synchronously) whenever an agent goes down."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def forget(self, agent_id: uuid.UUID) -> None:
        """Drop the entry of an agent that is up (keeps the map from growing with every
        agent that ever connected); a down mark stays until the agent comes back."""
        entry = self._entries.get(agent_id)
        if entry is not None and not entry.signal.is_set():
            del self._entries[agent_id]


class _Bus(Protocol):
    def subscribe(self, channel: str) -> Any: ...


def down_event(agent_id: uuid.UUID, reason: str) -> dict[str, Any]:
    return {"type": "down", "agent_id": str(agent_id), "reason": reason}


def up_event(agent_id: uuid.UUID) -> dict[str, Any]:
    return {"type": "up", "agent_id": str(agent_id)}


def apply_event(liveness: AgentLiveness, event: dict[str, Any]) -> None:
    """Apply one bus event (malformed ones are ignored: the bus is a hint)."""
    if event.get("reconnected"):
        liveness.forget_all_down()
        return
    try:
        agent_id = uuid.UUID(str(event.get("agent_id")))
    except ValueError:
        return
    if event.get("type") == "down":
        liveness.mark_down(agent_id, str(event.get("reason") or "agent session lost"))
    elif event.get("type") == "up":
        liveness.mark_up(agent_id)


async def follow_liveness(liveness: AgentLiveness, bus: _Bus) -> None:
    """Feed ``liveness`` from the bus until cancelled (runs in every replica; on the
    replica that published, applying its own event again is a no-op)."""
    async with bus.subscribe(LIVENESS_CHANNEL) as sub:
        async for event in sub:
            apply_event(liveness, event)
