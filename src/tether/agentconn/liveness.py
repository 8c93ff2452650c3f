"""Which agents are known to be unreachable, as told by their session (docs/behaviour.md §4.1).

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
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from tether.channels import AGENT_LIVENESS

log = logging.getLogger(__name__)

LIVENESS_CHANNEL = AGENT_LIVENESS  # the bus channel (defined in tether.channels)

Listener = Callable[[uuid.UUID, str], None]


class AgentLiveness:
    """Per-agent down/up state with an event per "up epoch" (see the module docstring).

    Events of agents that are up are held weakly (by the clients that wait on them), so the
    map does not grow with every agent ever dialled; an agent that is down is remembered
    until it comes back (or the bus says marks may be stale)."""

    def __init__(self) -> None:
        self._up: weakref.WeakValueDictionary[uuid.UUID, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        self._down: dict[uuid.UUID, tuple[asyncio.Event, str]] = {}
        self._listeners: list[Listener] = []

    def signal(self, agent_id: uuid.UUID) -> asyncio.Event:
        """The event that is set when the agent goes down (already set if it is down now).
        A client keeps the event of the epoch it was created in: once the agent is up again
        its old clients stay failed, new ones get a fresh event."""
        down = self._down.get(agent_id)
        if down is not None:
            return down[0]
        event = self._up.get(agent_id)
        if event is None:
            event = asyncio.Event()
            self._up[agent_id] = event
        return event

    def is_down(self, agent_id: uuid.UUID) -> bool:
        return agent_id in self._down

    def reason(self, agent_id: uuid.UUID) -> str:
        down = self._down.get(agent_id)
        return down[1] if down is not None else ""

    def mark_down(self, agent_id: uuid.UUID, reason: str) -> bool:
        """Fail every waiter of the agent; True when it was not down already."""
        if agent_id in self._down:
            return False
        event = self._up.pop(agent_id, None) or asyncio.Event()
        self._down[agent_id] = (event, reason)
        event.set()
        for listener in list(self._listeners):
            try:
                listener(agent_id, reason)
            except Exception:  # a listener bug must not keep the others from hearing it
                log.exception("liveness listener failed")
        return True

    def mark_up(self, agent_id: uuid.UUID) -> None:
        """The agent has a working session again: forget it was down (the next
        :meth:`signal` starts a fresh epoch)."""
        self._down.pop(agent_id, None)

    def forget_all_down(self) -> None:
        """Bus events may have been lost (a reconnect): stop failing dials on a stale mark;
        request deadlines still bound every request."""
        self._down.clear()

    def add_listener(self, listener: Listener) -> None:
        """``listener(agent_id, reason)`` runs (synchronously) whenever an agent goes down."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


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
