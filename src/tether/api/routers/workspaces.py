"""Workspaces: create, list, show, start, stop, delete, rebuild, cancel, logs, exec."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from tether.api.auth import CurrentUser
from tether.api.deps import (
    AgentClientsDep,
    AgentStoreDep,
    BusDep,
    SettingsDep,
    TemplateStoreDep,
    WorkspaceServiceDep,
    WorkspaceStoreDep,
)
from tether.api.limits import COMMAND_MAX_CHARS, PATH_MAX, SEQ_MAX, Name, Parameters, TtlMs
from tether.api.revocation import StreamGuardDep
from tether.api.routers.templates import resolve_template
from tether.api.schemas import BuildOut, WorkspaceOut
from tether.api.sse import SSE_RESPONSE, sse_event, sse_response
from tether.channels import agent_channel, job_channel
from tether.db.agents import AgentStore
from tether.db.pubsub import EventBus
from tether.db.workspaces import WorkspaceStore
from tether.domain.agent import AgentStatus, Lifecycle
from tether.domain.user import User
from tether.domain.workspace import LogLine, Transition
from tether.errors import InvalidInput, NotFound, WorkspaceStopped
from tether.workspaces.service import WorkspaceService

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])


class CreateWorkspace(BaseModel):
    template: Name  # name or id
    name: Name
    parameters: Parameters = Field(default_factory=dict)
    ttl_ms: TtlMs | None = None


class StartWorkspace(BaseModel):
    parameters: Parameters = Field(default_factory=dict)


class BuildResult(BaseModel):
    build: BuildOut
    created: bool
    # start only: started | in_progress | already_running | rebuilt (agent was dead)
    action: str | None = None
    message: str | None = None


class ExecRequest(BaseModel):
    command: str = Field(min_length=1, max_length=COMMAND_MAX_CHARS)
    timeout_s: float | None = Field(default=None, gt=0)
    workdir: str | None = Field(default=None, max_length=PATH_MAX)
    background: bool = False


@router.post("", status_code=201)
async def create(
    svc: WorkspaceServiceDep, templates: TemplateStoreDep, body: CreateWorkspace, user: CurrentUser
) -> WorkspaceOut:
    template = await resolve_template(templates, body.template)
    ws, _ = await svc.create(
        user, template=template, name=body.name, parameters=body.parameters, ttl_ms=body.ttl_ms
    )
    return WorkspaceOut.of(await svc.view_of(ws))


@router.get("")
async def list_workspaces(
    svc: WorkspaceServiceDep, user: CurrentUser, all: bool = False
) -> list[WorkspaceOut]:
    return [WorkspaceOut.of(await svc.view_of(ws)) for ws in await svc.list(user, all_users=all)]


@router.get("/{ref}")
async def show(svc: WorkspaceServiceDep, ref: str, user: CurrentUser) -> WorkspaceOut:
    ws = await svc.resolve(user, ref)
    return WorkspaceOut.of(await svc.view_of(ws))


async def _transition(
    svc: WorkspaceService, user: User, ref: str, transition: Transition, params: dict[str, str]
) -> BuildResult:
    ws = await svc.resolve(user, ref)
    build, created = await svc.transition(user, ws.id, transition, parameters=params or None)
    return BuildResult(build=BuildOut.of(build), created=created)


@router.post("/{ref}/start")
async def start(
    svc: WorkspaceServiceDep,
    settings: SettingsDep,
    ref: str,
    user: CurrentUser,
    body: StartWorkspace | None = None,
) -> BuildResult:
    params = body.parameters if body else {}
    ws = await svc.resolve(user, ref)
    outcome = await svc.start(
        user, ws.id, timeout_s=settings.build_timeout_s, parameters=params or None
    )
    return BuildResult(
        build=BuildOut.of(outcome.build),
        created=outcome.created,
        action=outcome.action.value,
        message=outcome.message,
    )


@router.post("/{ref}/stop")
async def stop(svc: WorkspaceServiceDep, ref: str, user: CurrentUser) -> BuildResult:
    return await _transition(svc, user, ref, Transition.STOP, {})


@router.delete("/{ref}")
async def delete(svc: WorkspaceServiceDep, ref: str, user: CurrentUser) -> BuildResult:
    return await _transition(svc, user, ref, Transition.DELETE, {})


@router.post("/{ref}/rebuild")
async def rebuild(
    svc: WorkspaceServiceDep, settings: SettingsDep, ref: str, user: CurrentUser
) -> BuildResult:
    ws = await svc.resolve(user, ref)
    build = await svc.rebuild(user, ws.id, timeout_s=settings.build_timeout_s)
    return BuildResult(build=BuildOut.of(build), created=True)


@router.post("/{ref}/cancel")
async def cancel(svc: WorkspaceServiceDep, ref: str, user: CurrentUser) -> BuildOut:
    ws = await svc.resolve(user, ref)
    return BuildOut.of(await svc.cancel(user, ws.id))


@router.get("/{ref}/builds")
async def builds(
    svc: WorkspaceServiceDep, store: WorkspaceStoreDep, ref: str, user: CurrentUser
) -> list[BuildOut]:
    ws = await svc.resolve(user, ref)
    return [BuildOut.of(b) for b in await store.list_builds(ws.id)]


@router.get("/{ref}/logs", responses=SSE_RESPONSE)
async def logs(
    request: Request,
    svc: WorkspaceServiceDep,
    store: WorkspaceStoreDep,
    bus: BusDep,
    guard: StreamGuardDep,
    ref: str,
    user: CurrentUser,
    build: Annotated[int | None, Query(ge=1, le=SEQ_MAX)] = None,
    follow: bool = False,
) -> Any:
    """The build job's log. ``follow=true`` streams it as SSE until the job finishes."""
    ws = await svc.resolve(user, ref)
    builds = await store.list_builds(ws.id)
    if not builds:
        raise NotFound("workspace has no builds")
    chosen = (
        builds[-1] if build is None else next((b for b in builds if b.build_number == build), None)
    )
    if chosen is None:
        raise NotFound(f"build #{build} not found")
    if not follow:
        lines = await store.job_logs(chosen.job_id)
        return {
            "build": BuildOut.of(chosen).model_dump(mode="json"),
            "logs": [{"id": ln.id, "level": ln.level, "output": ln.output} for ln in lines],
        }
    events_ = _follow_logs(store, bus, chosen.id, chosen.job_id, request)
    return sse_response(guard.stream(request, events_))


async def _follow_logs(
    store: WorkspaceStore, bus: EventBus, build_id: uuid.UUID, job_id: uuid.UUID, request: Request
) -> AsyncIterator[str]:
    last = 0
    async with bus.subscribe(job_channel(job_id)) as sub:
        while True:
            for line in await store.job_logs(job_id, after_id=last):
                last = line.id
                yield sse_event(
                    {"level": line.level, "output": line.output}, event="log", id=line.id
                )
            build = await store.get_build(build_id)
            if not build.status.in_progress:
                for line in await store.job_logs(job_id, after_id=last):
                    last = line.id
                    yield sse_event(
                        {"level": line.level, "output": line.output}, event="log", id=line.id
                    )
                yield sse_event(BuildOut.of(build).model_dump(mode="json"), event="done")
                return
            if await request.is_disconnected():
                return
            await sub.get(timeout=1.0)


# Lifecycle states in which the startup script may still write to the agent's log.
_STARTUP_PENDING = frozenset({Lifecycle.CREATED, Lifecycle.STARTING})


def _agent_line(line: LogLine) -> dict[str, Any]:
    return {
        "id": line.id,
        "created_at": line.created_at.isoformat(),
        "source": line.source,
        "level": line.level,
        "output": line.output,
    }


@router.get("/{ref}/agents/{agent_id}/logs", responses=SSE_RESPONSE)
async def agent_logs(
    request: Request,
    svc: WorkspaceServiceDep,
    agents: AgentStoreDep,
    bus: BusDep,
    guard: StreamGuardDep,
    ref: str,
    agent_id: uuid.UUID,
    user: CurrentUser,
    follow: bool = False,
) -> Any:
    """An agent's log (its startup script's output), oldest first.

    ``follow=true`` streams it as SSE (``log`` events, then one ``done`` event with the
    lifecycle state) until the lifecycle is past ``created``/``starting``."""
    ws = await svc.resolve(user, ref)
    agent = await agents.get(agent_id)
    if agent.workspace_id != ws.id:
        raise NotFound(f"agent {agent_id} not found in workspace {ws.name}")
    if not follow:
        lines = await agents.logs(agent.id)
        return {
            "agent_id": str(agent.id),
            "lifecycle_state": agent.lifecycle_state.value,
            "logs": [_agent_line(ln) for ln in lines],
        }
    return sse_response(guard.stream(request, _follow_agent_logs(agents, bus, agent.id, request)))


async def _follow_agent_logs(
    agents: AgentStore, bus: EventBus, agent_id: uuid.UUID, request: Request
) -> AsyncIterator[str]:
    last = 0
    async with bus.subscribe(agent_channel(agent_id)) as sub:
        while True:
            # Read the state before the lines: a final state seen here means every line of
            # the script was stored before this read, so one more read drains them all.
            agent = await agents.get(agent_id)
            for line in await agents.logs(agent_id, after_id=last):
                last = line.id
                yield sse_event(_agent_line(line), event="log", id=line.id)
            if agent.lifecycle_state not in _STARTUP_PENDING:
                yield sse_event({"lifecycle_state": agent.lifecycle_state.value}, event="done")
                return
            if await request.is_disconnected():
                return
            await sub.get(timeout=1.0)


@router.post("/{ref}/exec")
async def exec_command(
    svc: WorkspaceServiceDep,
    clients: AgentClientsDep,
    settings: SettingsDep,
    ref: str,
    body: ExecRequest,
    user: CurrentUser,
) -> Any:
    """Run a command in the workspace through its agent."""
    ws = await svc.resolve(user, ref)
    if body.timeout_s is not None and body.timeout_s > settings.exec_max_timeout_s:
        raise InvalidInput(
            f"timeout_s must be at most {settings.exec_max_timeout_s:g}", field="timeout_s"
        )
    view = await svc.view_of(ws)
    candidates = [a for a in view.agents if a.status is AgentStatus.CONNECTED]
    if view.state != "running" or not candidates:
        raise WorkspaceStopped(
            f"workspace {ws.name} is {view.state} and has no connected agent; start it first"
        )
    chosen = next((a for a in candidates if a.agent.chat), candidates[0]).agent
    if not chosen.dial_address or not chosen.dial_secret:
        raise WorkspaceStopped("the workspace agent has not registered its address yet")
    async with clients.borrow(chosen.id, chosen.dial_address, chosen.dial_secret) as client:
        await svc.touch(ws.id)
        result = await client.exec(
            body.command, timeout_s=body.timeout_s, workdir=body.workdir, background=body.background
        )
    return result.model_dump(mode="json") if hasattr(result, "model_dump") else result
