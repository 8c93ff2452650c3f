"""Workspace lifecycle tools for root chats (docs/behaviour.md §5.3, with tether's
``stop_workspace``): list_templates, read_template, create_workspace, start_workspace,
stop_workspace.

create/start/stop hold the chat's workspace mutex (kept by the worker across turns) for
their whole duration, builds and agent waits included, so parallel calls in one step never
create two workspaces (CW-22); the idempotency check reads the database, so a later turn is
safe as well. The chat is bound as soon as a build exists (agent NULL, bound lazily by the
connection cache on first use — CW-27/SW-13).
"""

from __future__ import annotations

import math
import random
import re
import uuid
from typing import Any

from pydantic import Field
from pydantic_ai import Tool

from tether.chatd.binding import binding_of, select_chat_agent
from tether.chatd.tools.base import Args, ToolContext, invalid_arguments, make_tool
from tether.chatd.tools.readiness import agent_readiness, build_agent_report, wait_build
from tether.domain.agent import AgentStatus
from tether.domain.user import Role, User
from tether.domain.workspace import Build, JobStatus, Transition, Workspace
from tether.errors import (
    AgentSelectionError,
    Forbidden,
    NoRunningAgent,
    NotFound,
    NoWorkspace,
    TetherError,
    WorkspaceDeleted,
)
from tether.workspaces.service import NAME_RE
from tether.workspaces.startrunning import StartAction, StartOutcome
from tether.workspaces.status import compute_agent_status
from tether.workspaces.template_parse import spec_from_json

PAGE_SIZE = 10
_IN_PROGRESS = (JobStatus.PENDING, JobStatus.RUNNING)
_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lucky")
_NOUNS = ("otter", "falcon", "maple", "river", "comet", "badger", "cedar", "heron", "lynx")


def generate_name(seed: str) -> str:
    """docs/behaviour.md §5.3 (create_workspace, step 3): a normalised base of at most 27
    characters from ``seed`` ("workspace" when nothing is left) plus ``-`` and 4 hex
    characters."""
    base = re.sub(r"[^a-z0-9]+", "-", seed.lower()).strip("-") or "workspace"
    base = base[:27].strip("-") or "workspace"
    name = f"{base}-{uuid.uuid4().hex[:4]}"
    if NAME_RE.match(name):
        return name
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(0, 9)}"


def workspace_name_for(requested: str | None, template_name: str) -> str:
    """CW-25: empty → generated from the template name; invalid → generated from it."""
    if not requested:
        return generate_name(template_name)
    if NAME_RE.match(requested):
        return requested
    return generate_name(requested)


class ListTemplatesArgs(Args):
    query: str | None = Field(default=None, description="Case-insensitive substring filter.")
    page: int = Field(default=1, ge=1, description="1-based page (10 per page).")


class TemplateIdArgs(Args):
    template_id: str = Field(description="Template id from list_templates.")


class CreateWorkspaceArgs(Args):
    template_id: str = Field(description="Template id from list_templates.")
    name: str | None = Field(default=None, description="Workspace name (optional).")
    parameters: dict[str, str] | None = Field(
        default=None, description="Template parameter values by name."
    )


class NoArgs(Args):
    pass


def _template_uuid(value: str) -> uuid.UUID:
    if not value.strip():
        raise invalid_arguments("template_id is required; use list_templates to find one")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid_arguments(f"invalid template_id: {value!r} is not a uuid") from None


def lifecycle_tools(ctx: ToolContext) -> list[Tool[Any]]:
    deps = ctx.deps
    settings = deps.settings

    async def owner() -> User:
        user = await deps.users.get_user(ctx.chat.owner_id)
        return User(id=user.id, name=user.name, role=Role.MEMBER, created_at=user.created_at)

    async def bind(ws: Workspace, build: Build) -> None:
        chat = await deps.chats.update_workspace_binding(
            ctx.chat_id, workspace_id=ws.id, build_id=build.id, agent_id=None
        )
        ctx.conns.select_workspace(binding_of(chat))
        # "On chat updated": the UI learns the workspace/build at once (streams build logs).
        deps.hub.publish(
            ctx.chat_id,
            "status",
            {
                "status": chat.status.value,
                "workspace_id": str(ws.id),
                "build_id": str(build.id),
                "agent_id": None,
            },
        )

    async def allowed(template_id: uuid.UUID) -> None:
        """CW-24: outside a non-empty admin allowlist a template does not exist for chats."""
        if not (await deps.chat_config()).allows(template_id):
            raise Forbidden(
                f"template {template_id} is not allowlisted for chats; use list_templates"
            )

    async def list_templates(args: ListTemplatesArgs) -> dict[str, Any]:
        config = await deps.chat_config()
        templates = [
            t
            for t in await deps.template_store.list(include_deprecated=False)
            if config.allows(t.id)
        ]
        if args.query:
            q = args.query.lower()
            templates = [
                t
                for t in templates
                if q in t.name.lower() or q in t.display_name.lower() or q in t.description.lower()
            ]
        total = len(templates)
        start = (args.page - 1) * PAGE_SIZE
        page = templates[start : start + PAGE_SIZE]
        return {
            "templates": [
                {
                    "id": str(t.id),
                    "name": t.name,
                    "display_name": t.display_name,
                    "description": t.description,
                }
                for t in page
            ],
            "count": len(page),
            "page": args.page,
            "total_pages": max(1, math.ceil(total / PAGE_SIZE)),
            "total_count": total,
        }

    async def read_template(args: TemplateIdArgs) -> dict[str, Any]:
        template_id = _template_uuid(args.template_id)
        await allowed(template_id)
        template = await deps.template_store.get(template_id)
        parameters: list[dict[str, Any]] = []
        if template.active_version_id is not None:
            version = await deps.template_store.get_version(template.active_version_id)
            spec = spec_from_json(version.spec)
            parameters = [p.model_dump(mode="json", exclude_none=True) for p in spec.parameters]
        return {
            "id": str(template.id),
            "name": template.name,
            "display_name": template.display_name,
            "description": template.description,
            "deprecated": template.deprecated,
            "parameters": parameters,
        }

    async def check_existing() -> dict[str, Any] | None:
        """CW-12..19: a result when the chat's workspace can be reused, else None."""
        chat = await deps.chats.get(ctx.chat_id)
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
        if status in _IN_PROGRESS:
            await bind(ws, build)
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
                agent = _pick(agents)
                result.update(await agent_readiness(deps, agent, dial=True))
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
        agent = _pick(agents)
        agent_status = compute_agent_status(
            agent, deps.clock.now(), settings.agent_inactive_disconnect_s
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

    async def after_ready(result: dict[str, Any]) -> dict[str, Any]:
        """ "On chat updated" after the agent-ready wait (docs/behaviour.md §5.6, Coder
        #25298): the turn reads AGENTS.md and primes the MCP cache so the following steps see
        both."""
        if "error" not in result and "agent_status" not in result and "workspace_name" in result:
            if result.get("status") != "stopped":
                await ctx.workspace_ready()
        return result

    async def create_workspace(args: CreateWorkspaceArgs) -> dict[str, Any]:
        return await after_ready(await _create_workspace(args))

    async def start_workspace(args: NoArgs) -> dict[str, Any]:
        return await after_ready(await _start_workspace(args))

    async def _create_workspace(args: CreateWorkspaceArgs) -> dict[str, Any]:
        template_id = _template_uuid(args.template_id)
        await allowed(template_id)  # CW-24: before taking the mutex
        async with ctx.state.workspace_lock:
            existing = await check_existing()
            if existing is not None:
                return existing
            actor = await owner()
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
            await bind(ws, build)  # kept even if the build fails: a later call replaces it
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

    async def _start_workspace(_args: NoArgs) -> dict[str, Any]:
        async with ctx.state.workspace_lock:
            chat = await deps.chats.get(ctx.chat_id)
            if chat.workspace_id is None:
                raise NoWorkspace("the chat has no workspace; use create_workspace first")
            ws = await deps.workspace_store.get(chat.workspace_id)
            if ws.deleted:
                raise WorkspaceDeleted()
            latest = await deps.workspace_store.latest_build(ws.id)
            if latest is None:
                raise TetherError("the workspace has no build")
            if latest.status in _IN_PROGRESS:
                await bind(ws, latest)
                error = await wait_build(deps, latest.id)
                if error is not None:
                    return {
                        "error": f"waiting for in-progress build: {error}",
                        "build_id": str(latest.id),
                    }
                return await _started(ws, latest)
            if latest.status is JobStatus.SUCCEEDED and latest.transition is Transition.START:
                # Start means running: a dead agent (killed, frozen) is rebuilt, not waited on.
                outcome = await deps.workspaces.start(
                    await owner(), ws.id, timeout_s=settings.build_timeout_s, reason="chat"
                )
                if outcome.action is not StartAction.REBUILT:
                    return await _started(ws, None)
                return await _rebuilt(ws, outcome)
            build, _ = await deps.workspaces.transition(
                await owner(), ws.id, Transition.START, reason="chat"
            )
            await bind(ws, build)
            error = await wait_build(deps, build.id)
            if error is not None:
                return {
                    "error": f"workspace start build failed: {error}",
                    "build_id": str(build.id),
                }
            result = await _started(ws, build)
            if build.template_version_id != latest.template_version_id:
                result["updated_to_active_version"] = True
                result["update_reason"] = "template requires active versions"
                result["message"] = (
                    "the workspace was started on the template's active version, "
                    "which differs from the version of its previous build"
                )
            return result

    async def _rebuilt(ws: Workspace, outcome: StartOutcome) -> dict[str, Any]:
        await bind(ws, outcome.build)
        error = await wait_build(deps, outcome.build.id)
        if error is not None:
            return {
                "error": f"rebuilding the workspace failed: {error}",
                "build_id": str(outcome.build.id),
            }
        result = await _started(ws, outcome.build)
        result.update(rebuilt=True, message=outcome.message)
        return result

    async def _started(ws: Workspace, build: Build | None) -> dict[str, Any]:
        result: dict[str, Any] = {"started": True, "workspace_name": ws.name}
        latest = build or await deps.workspace_store.latest_build(ws.id)
        if latest is not None:
            result.update(await build_agent_report(deps, latest.id))
        if build is not None:
            result["build_id"] = str(build.id)
        else:
            result["no_build"] = True
        return result

    async def stop_workspace(_args: NoArgs) -> dict[str, Any]:
        async with ctx.state.workspace_lock:
            chat = await deps.chats.get(ctx.chat_id)
            if chat.workspace_id is None:
                raise NoWorkspace()
            ws = await deps.workspace_store.get(chat.workspace_id)
            if ws.deleted:
                raise WorkspaceDeleted()
            latest = await deps.workspace_store.latest_build(ws.id)
            if (
                latest is not None
                and latest.status is JobStatus.SUCCEEDED
                and latest.transition is Transition.STOP
            ):
                return {"stopped": True, "already_stopped": True, "build_id": str(latest.id)}
            build, _ = await deps.workspaces.transition(
                await owner(), ws.id, Transition.STOP, reason="chat"
            )
            await bind(ws, build)  # also evicts the chat's cached connection
            error = await wait_build(deps, build.id)
            if error is not None:
                return {"error": f"workspace stop build failed: {error}", "build_id": str(build.id)}
            return {"stopped": True, "build_id": str(build.id)}

    return [
        make_tool(
            "list_templates",
            "List workspace templates (10 per page).",
            ListTemplatesArgs,
            list_templates,
        ),
        make_tool(
            "read_template",
            "Describe a template and its parameters.",
            TemplateIdArgs,
            read_template,
        ),
        make_tool(
            "create_workspace",
            "Create a workspace for this chat from a template and wait until it is ready. "
            "Idempotent: if the chat already has a usable workspace it is returned instead.",
            CreateWorkspaceArgs,
            create_workspace,
        ),
        make_tool(
            "start_workspace",
            "Start the chat's stopped workspace and wait until it is ready. Idempotent.",
            NoArgs,
            start_workspace,
        ),
        make_tool(
            "stop_workspace",
            "Stop the chat's workspace (its processes end; files are kept).",
            NoArgs,
            stop_workspace,
        ),
    ]


def _pick(agents: list[Any]) -> Any:
    try:
        return select_chat_agent(agents)
    except (AgentSelectionError, NoRunningAgent):
        return agents[0]
