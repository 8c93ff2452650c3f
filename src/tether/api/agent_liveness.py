"""The liveness half of the agent session: server pings, and what happens when an agent
goes silent (docs/behaviour.md §4.1; :mod:`tether.agentconn.liveness` for the shared state).

A silent agent — frozen (SIGSTOP), or its host stopped answering while the TCP connection
stays up — is marked down in this process at once (in-flight requests to it fail with
``agent_unreachable``, cached connections are evicted), the session is closed so a resumed
agent reconnects, and the mark is published for the other replicas. The session's
``finally`` then records ``disconnected_at``, so the API's status is honest too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from fastapi import WebSocket

from tether.agent import protocol
from tether.agentconn.liveness import LIVENESS_CHANNEL, AgentLiveness, down_event, up_event
from tether.clock import Clock
from tether.db.pubsub import EventBus

log = logging.getLogger("tether.api.agent_session")

# The close code a silent agent's session gets ("try again later"): a resumed agent reconnects.
SILENT_CLOSE_CODE = 1013


def agent_silence_timeout_s(settings: Any) -> float:
    """How long the agent waits for a server frame before it reconnects: generous (a slow
    server is not a dead one), never below three ping intervals."""
    return max(3 * settings.agent_ping_interval_s, 2 * settings.agent_unreachable_after_s)


async def ping_agent(ws: WebSocket, interval_s: float, clock: Clock) -> None:
    """Send a ping frame every ``interval_s`` (of ``clock``) until cancelled or the socket
    fails."""
    frame = protocol.encode_frame(protocol.Ping())
    with contextlib.suppress(Exception):
        while True:
            await clock.sleep(interval_s)
            await ws.send_text(frame)


async def session_up(liveness: AgentLiveness, bus: EventBus, agent_id: uuid.UUID) -> None:
    """A session of ``agent_id`` started: it is reachable again (here and elsewhere)."""
    was_down = liveness.is_down(agent_id)
    liveness.mark_up(agent_id)
    if was_down:
        log.info("agent %s is reachable again", agent_id)
    with contextlib.suppress(Exception):
        await bus.publish(LIVENESS_CHANNEL, up_event(agent_id))


async def session_silent(
    liveness: AgentLiveness, bus: EventBus, ws: WebSocket, agent_id: uuid.UUID, after_s: float
) -> None:
    """Nothing arrived from the agent for ``after_s``: mark it down first (in-process waiters
    fail now), then close the session without waiting for the frozen peer, then tell the
    other replicas."""
    reason = f"the workspace agent stopped answering (no session frame for {after_s:g}s)"
    log.warning("agent %s: %s", agent_id, reason)
    liveness.mark_down(agent_id, reason)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=SILENT_CLOSE_CODE), 1.0)
    with contextlib.suppress(Exception):
        await bus.publish(LIVENESS_CHANNEL, down_event(agent_id, reason))
