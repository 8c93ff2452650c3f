"""Waiting for a build and for its agent to be usable (docs/behaviour.md §5.3, §5.3.1).

Both waits are bounded by settings and wake early on bus events (the job's and the agent's
channels); the database is re-read on every wake-up, events are only hints.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tether.chatd.binding import AgentRow, select_chat_agent
from tether.chatd.tools.base import ChatdDeps
from tether.domain.agent import Lifecycle
from tether.domain.workspace import JobStatus
from tether.errors import AgentSelectionError, NoRunningAgent, Timeout
from tether.workspaces import events

_WAITING_LIFECYCLE = (Lifecycle.CREATED, Lifecycle.STARTING)


async def wait_build(deps: ChatdDeps, build_id: uuid.UUID) -> str | None:
    """Wait for the build; ``None`` on success, else the failure text (docs/behaviour.md §5.3)."""
    try:
        build = await deps.workspaces.wait_for_build(
            build_id, timeout_s=deps.settings.build_timeout_s
        )
    except Timeout as exc:
        return f"timed out waiting for workspace build: {exc.message}"
    status = build.status
    if status is JobStatus.SUCCEEDED:
        return None
    if status is JobStatus.FAILED:
        return build.job.error or "build failed"
    if status is JobStatus.CANCELED:
        return "build was canceled"
    return f"unexpected job status {status.value}"


async def probe_agent(deps: ChatdDeps, agent_id: uuid.UUID) -> str | None:
    """Phase 1: dial the agent until one dial succeeds (each attempt bounded by
    ``agent_ready_attempt_s``, retried every ``agent_ready_retry_s``, overall
    ``agent_ready_timeout_s``). ``None`` when reachable, else the last error."""
    settings = deps.settings
    clock = deps.clock
    deadline = clock.monotonic() + settings.agent_ready_timeout_s
    last_error = "agent has not connected yet"
    async with deps.bus.subscribe(events.agent_channel(agent_id)) as sub:
        while True:
            agent = await deps.agents.find(agent_id)
            if agent is None:
                return "agent no longer exists"
            if agent.dial_address and agent.dial_secret:
                try:
                    async with asyncio.timeout(settings.agent_ready_attempt_s):
                        conn = await deps.dialer.dial(agent, headers={})
                    await conn.aclose()  # only a probe
                    return None
                except TimeoutError:
                    last_error = f"dial attempt timed out after {settings.agent_ready_attempt_s:g}s"
                except Exception as exc:
                    last_error = str(exc) or type(exc).__name__
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return last_error
            await sub.get(timeout=min(settings.agent_ready_retry_s, remaining))


async def wait_lifecycle(deps: ChatdDeps, agent_id: uuid.UUID) -> dict[str, Any]:
    """Phase 2: wait for the startup scripts; ``{}`` when ready, else the
    ``startup_scripts`` / ``lifecycle_state`` fields of docs/behaviour.md §5.3.1."""
    clock = deps.clock
    deadline = clock.monotonic() + deps.settings.startup_script_timeout_s
    poll = min(2.0, deps.settings.agent_ready_retry_s)
    async with deps.bus.subscribe(events.agent_channel(agent_id)) as sub:
        while True:
            try:
                agent = await deps.agents.find(agent_id)
            except Exception:  # poll read errors are ignored (docs/behaviour.md §5.3.1)
                agent = None
            if agent is not None and agent.lifecycle_state not in _WAITING_LIFECYCLE:
                if agent.lifecycle_state is Lifecycle.READY:
                    return {}
                return {
                    "startup_scripts": "startup_scripts_failed",
                    "lifecycle_state": agent.lifecycle_state.value,
                }
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return {"startup_scripts": "startup_scripts_timeout"}
            await sub.get(timeout=min(poll, remaining))


async def agent_readiness(deps: ChatdDeps, agent: AgentRow, *, dial: bool) -> dict[str, Any]:
    """The agent-readiness fields: reachability (skipped when ``dial`` is False, e.g. the
    agent is known connected) then startup scripts. Empty when all is well."""
    if dial:
        error = await probe_agent(deps, agent.id)
        if error is not None:
            return {"agent_status": "not_ready", "agent_error": error}
    try:
        return await wait_lifecycle(deps, agent.id)
    except asyncio.CancelledError:
        raise
    except Exception:
        return {"startup_scripts": "startup_scripts_unknown"}


async def build_agent_report(deps: ChatdDeps, build_id: uuid.UUID) -> dict[str, Any]:
    """Agent fields after a build: ``no_agent``, ``selection_error`` or the readiness."""
    try:
        agents = await deps.agents.for_build(build_id)
    except Exception:
        return {}
    try:
        agent = select_chat_agent(agents)
    except NoRunningAgent:
        return {"agent_status": "no_agent"}
    except AgentSelectionError as err:
        return {"agent_status": "selection_error", "agent_error": err.message}
    return await agent_readiness(deps, agent, dial=True)
