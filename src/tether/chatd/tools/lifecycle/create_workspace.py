"""``create_workspace`` (docs/behaviour.md §5.3): idempotent per chat — a usable workspace
of the chat is returned instead of a new one (CW-12..19); the chat is bound as soon as the
build exists. Holds the chat's workspace mutex throughout (CW-22)."""

from __future__ import annotations

from typing import Any

from tether.chatd.tools.lifecycle.common import (
    IN_PROGRESS,
    CreateWorkspaceArgs,
    Lifecycle,
    pick,
    template_uuid,
    workspace_name_for,
)
from tether.chatd.tools.readiness import agent_readiness, build_agent_report, wait_build
from tether.domain.workspace import JobStatus, Transition
from tether.errors import NotFound
from tether.workspaces.status import AgentStatus, compute_agent_status


async def create_workspace(lc: Lifecycle, args: CreateWorkspaceArgs) -> dict[str, Any]:
    return await lc.after_ready(await _create(lc, args))


async def _create(lc: Lifecycle, args: CreateWorkspaceArgs) -> dict[str, Any]:
    deps, settings = lc.deps, lc.settings
    template_id = template_uuid(args.template_id)
    await lc.allowed(template_id)  # CW-24: before taking the mutex
    async with lc.ctx.state.workspace_lock:
        existing = await check_existing(lc)
        if existing is not None:
            return existing
        actor = await lc.owner()
        try:
            template = await deps.template_store.get(template_id)
        except NotFound as err:
            raise NotFound(f"look up template: {err.message}; use list_templates") from err
        ttl_ms = settings.chat_workspace_ttl_ms if settings.chat_workspace_ttl_ms > 0 else None
        ws, build = await deps.workspaces.create(
            actor,
            template=template,
            name=workspace_name_for(args.name, template.name),
            parameters=args.parameters,
            ttl_ms=ttl_ms,
            reason="chat",
        )
        await lc.bind(ws, build)  # kept even if the build fails: a later call replaces it
        error = await wait_build(deps, build.id)
        if error is not None:
            return {"error": f"workspace build failed: {error}", "build_id": str(build.id)}
        result: dict[str, Any] = {
            "created": True,
            "workspace_name": f"{actor.name}/{ws.name}",
            "build_id": str(build.id),
        }
        result.update(await build_agent_report(deps, build.id))
        return result


async def check_existing(lc: Lifecycle) -> dict[str, Any] | None:
    """CW-12..19: a result when the chat's workspace can be reused, else None."""
    deps = lc.deps
    chat = await deps.chats.get(lc.ctx.chat_id)
    if chat.workspace_id is None:
        return None
    try:
        ws = await deps.workspace_store.get(chat.workspace_id)
    except NotFound:
        return None
    if ws.deleted:
        return None
    build = await deps.workspace_store.latest_build(ws.id)
    if build is None:
        return None
    status = build.status
    if status in IN_PROGRESS:
        await lc.bind(ws, build)
        error = await wait_build(deps, build.id)
        if error is not None:
            return {
                "error": f"existing workspace build failed: {error}",
                "build_id": str(build.id),
            }
        result: dict[str, Any] = {
            "created": False,
            "workspace_name": ws.name,
            "status": "already_exists",
            "message": "workspace build completed",
            "build_id": str(build.id),
        }
        agents = await deps.agents.for_build(build.id)
        if agents:
            result.update(await agent_readiness(deps, pick(agents), dial=True))
        return result
    if status is not JobStatus.SUCCEEDED:
        return None  # failed, canceled, canceling → create a new one
    if build.transition is Transition.STOP:
        return {
            "created": False,
            "workspace_name": ws.name,
            "status": "stopped",
            "message": "the chat's workspace is stopped; use start_workspace to start it",
        }
    if build.transition is not Transition.START:
        return None
    agents = await deps.agents.for_build(build.id)
    if not agents:
        return None
    agent = pick(agents)
    agent_status = compute_agent_status(
        agent, deps.clock.now(), lc.settings.agent_inactive_disconnect_s
    )
    if agent_status is AgentStatus.CONNECTED:
        result = {
            "created": False,
            "workspace_name": ws.name,
            "status": "already_exists",
            "message": "workspace is already running and its agent recently connected",
        }
        result.update(await agent_readiness(deps, agent, dial=False))
        return result
    if agent_status is AgentStatus.CONNECTING:
        result = {
            "created": False,
            "workspace_name": ws.name,
            "status": "already_exists",
            "message": "workspace exists; its agent is still connecting",
        }
        result.update(await agent_readiness(deps, agent, dial=True))
        return result
    return None  # disconnected or timed out: considered dead
