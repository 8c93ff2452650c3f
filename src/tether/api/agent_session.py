"""Server side of the agent session WebSocket (protocol in :mod:`tether.agent.protocol`).

Records first/last connected and disconnected_at, the dial address (decided by the
backend), lifecycle (compare-and-set) and startup-script logs. Pings run both ways; an agent
silent for ``agent_unreachable_after_s`` is marked unreachable (see
:mod:`tether.api.agent_liveness`). A malformed frame closes the session with a
policy-violation code; the agent reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import pydantic
from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect

from tether.agent import protocol
from tether.agentconn.liveness import AgentLiveness
from tether.api.agent_liveness import (
    agent_silence_timeout_s,
    ping_agent,
    session_silent,
    session_up,
)
from tether.api.deps import (
    AgentStoreDep,
    BackendsDep,
    BusDep,
    ClockDep,
    LivenessDep,
    MetricsDep,
    PingsDep,
    SettingsDep,
    TemplateStoreDep,
    WorkspaceStoreDep,
)
from tether.channels import agent_channel
from tether.clock import Clock
from tether.db.agents import AgentStore
from tether.db.pubsub import EventBus
from tether.db.templates import TemplateStore
from tether.db.workspaces import WorkspaceStore
from tether.domain.agent import Lifecycle
from tether.errors import Conflict, TetherError
from tether.observability.hooks import agent_session_opened
from tether.observability.metrics import Metrics
from tether.settings import Settings
from tether.workspaces.backends.base import WorkspaceBackend, decided_dial_address
from tether.workspaces.pings import PingBatcher
from tether.workspaces.template_parse import spec_from_json

log = logging.getLogger("tether.api.agent_session")
router = APIRouter()

HELLO_TIMEOUT_S = 10.0


def _bearer(ws: WebSocket) -> str | None:
    value = ws.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def manifest_env(template_env: Mapping[str, str], parameters: Mapping[str, str]) -> dict[str, str]:
    """The manifest's env: the template's ``env`` plus ``TETHER_PARAM_<NAME>`` per build
    parameter (as the local backend sets them; other backends would not)."""
    env = dict(template_env)
    env.update({f"TETHER_PARAM_{k.upper()}": v for k, v in parameters.items()})
    return env


@dataclass
class SessionDeps:
    """What the agent session handler uses."""

    settings: Settings
    clock: Clock
    bus: EventBus
    agents: AgentStore
    workspace_store: WorkspaceStore
    template_store: TemplateStore
    backends: dict[str, WorkspaceBackend]
    pings: PingBatcher
    liveness: AgentLiveness
    metrics: Metrics


def session_deps(
    settings: SettingsDep,
    clock: ClockDep,
    bus: BusDep,
    agents: AgentStoreDep,
    workspace_store: WorkspaceStoreDep,
    template_store: TemplateStoreDep,
    backends: BackendsDep,
    pings: PingsDep,
    liveness: LivenessDep,
    metrics: MetricsDep,
) -> SessionDeps:
    return SessionDeps(
        settings,
        clock,
        bus,
        agents,
        workspace_store,
        template_store,
        backends,
        pings,
        liveness,
        metrics,
    )


@router.websocket("/api/v1/agent/session")
async def agent_session(ws: WebSocket, deps: Annotated[SessionDeps, Depends(session_deps)]) -> None:
    agents = deps.agents
    token = _bearer(ws)
    try:
        if token is None:
            raise TetherError("missing agent token")
        agent = await agents.authenticate(token)
    except TetherError:
        await ws.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
        return
    await ws.accept()
    try:
        hello = protocol.parse_agent_frame(
            await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT_S)
        )
    except (TimeoutError, pydantic.ValidationError, WebSocketDisconnect):
        with contextlib.suppress(Exception):
            await ws.close(code=1008)
        return
    if not isinstance(hello, protocol.Hello):
        await ws.close(code=1008)
        return
    build = await deps.workspace_store.get_build(agent.build_id)
    version = await deps.template_store.get_version(build.template_version_id)
    spec = spec_from_json(version.spec)
    # The backend decides where the server dials; an agent's claim counts only for
    # backends that leave it open (test fakes). A stolen token cannot redirect traffic.
    backend = deps.backends.get(spec.backend)
    address = decided_dial_address(backend, agent.workspace_id, agent.id) or hello.address
    agent = await agents.connected(
        agent.id,
        address=address,
        os=hello.os,
        directory=spec.directory,
        version=hello.version,
    )
    channel = agent_channel(agent.id)
    await deps.bus.publish(channel, {"type": "connected", "agent_id": str(agent.id)})
    settings = deps.settings
    await session_up(deps.liveness, deps.bus, agent.id)
    manifest = protocol.Manifest(
        agent_id=agent.id,
        name=agent.name,
        workspace_id=agent.workspace_id,
        directory=spec.directory,
        startup_script=spec.startup_script,
        startup_script_timeout_s=settings.startup_script_timeout_s,
        ping_interval_s=settings.agent_ping_interval_s,
        silence_timeout_s=agent_silence_timeout_s(settings),
        env=manifest_env(spec.env, build.parameters),
        mcp=spec.mcp,
        mcp_connect_timeout_s=settings.mcp_server_connect_timeout_s,
        mcp_retry_s=settings.mcp_server_retry_s,
    )
    silent = False
    pinger = asyncio.create_task(ping_agent(ws, settings.agent_ping_interval_s, deps.clock))
    session_closed = agent_session_opened(deps.metrics, agent)
    try:
        await ws.send_text(protocol.encode_frame(manifest))
        while True:
            try:
                raw = await asyncio.wait_for(ws.receive_text(), settings.agent_unreachable_after_s)
            except TimeoutError:
                silent = True  # frozen agent or host: the TCP connection may still be up
                break
            frame = protocol.parse_agent_frame(raw)
            if isinstance(frame, protocol.Ping):
                deps.pings.ping(agent.id)
            elif isinstance(frame, protocol.Lifecycle):
                try:
                    await agents.set_lifecycle(agent.id, Lifecycle(frame.state.value))
                except Conflict as exc:
                    log.warning("agent %s: %s", agent.id, exc.message)
                await deps.bus.publish(channel, {"type": "lifecycle", "state": frame.state.value})
            elif isinstance(frame, protocol.Log):
                await agents.append_logs(
                    agent.id, source=frame.source, level=frame.level, lines=frame.lines
                )
                await deps.bus.publish(channel, {"type": "log", "lines": frame.lines})
    except WebSocketDisconnect:
        pass
    except pydantic.ValidationError as exc:
        log.warning("agent %s sent a malformed frame: %s", agent.id, exc)
        with contextlib.suppress(Exception):
            await ws.close(code=1008)
    finally:
        session_closed()
        pinger.cancel()
        if silent:
            await session_silent(
                deps.liveness, deps.bus, ws, agent.id, settings.agent_unreachable_after_s
            )
        with contextlib.suppress(Exception):
            deps.pings.forget(agent.id)
            await asyncio.shield(agents.disconnected(agent.id))
        with contextlib.suppress(Exception):
            await deps.bus.publish(channel, {"type": "disconnected", "agent_id": str(agent.id)})
