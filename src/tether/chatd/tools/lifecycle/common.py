"""What the lifecycle tools share: the argument models, workspace names, and
:class:`Lifecycle` — one chat's view of its workspace (the owner acting, binding the chat
to a build, the template allowlist, the readiness report)."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from pydantic import Field

from tether.chatd.binding import binding_of, select_chat_agent
from tether.chatd.tools.base import Args, ChatdDeps, ToolContext, invalid_arguments
from tether.chatd.tools.readiness import build_agent_report
from tether.domain.user import Role, User
from tether.domain.workspace import Build, JobStatus, Workspace
from tether.errors import AgentSelectionError, Forbidden, NoRunningAgent
from tether.settings import Settings
from tether.workspaces.service import NAME_RE

PAGE_SIZE = 10
IN_PROGRESS = (JobStatus.PENDING, JobStatus.RUNNING)
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


def template_uuid(value: str) -> uuid.UUID:
    if not value.strip():
        raise invalid_arguments("template_id is required; use list_templates to find one")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid_arguments(f"invalid template_id: {value!r} is not a uuid") from None


def pick(agents: list[Any]) -> Any:
    """The chat's agent among a build's agents (the first when none qualifies)."""
    try:
        return select_chat_agent(agents)
    except (AgentSelectionError, NoRunningAgent):
        return agents[0]


class Lifecycle:
    """One chat's workspace, as the lifecycle tools of its turn see it."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    @property
    def deps(self) -> ChatdDeps:
        return self.ctx.deps

    @property
    def settings(self) -> Settings:
        return self.ctx.deps.settings

    async def owner(self) -> User:
        """The chat's owner, acting as a member (a chat never uses admin rights)."""
        user = await self.deps.users.get_user(self.ctx.chat.owner_id)
        return User(id=user.id, name=user.name, role=Role.MEMBER, created_at=user.created_at)

    async def bind(self, ws: Workspace, build: Build) -> None:
        """Bind the chat to ``build`` of ``ws`` (agent NULL: bound lazily, CW-27/SW-13)."""
        ctx = self.ctx
        chat = await self.deps.chats.update_workspace_binding(
            ctx.chat_id, workspace_id=ws.id, build_id=build.id, agent_id=None
        )
        ctx.conns.select_workspace(binding_of(chat))
        # "On chat updated": the UI learns the workspace/build at once (streams build logs).
        self.deps.hub.publish(
            ctx.chat_id,
            "status",
            {
                "status": chat.status.value,
                "workspace_id": str(ws.id),
                "build_id": str(build.id),
                "agent_id": None,
            },
        )

    async def allowed(self, template_id: uuid.UUID) -> None:
        """CW-24: outside a non-empty admin allowlist a template does not exist for chats."""
        if not (await self.deps.chat_config()).allows(template_id):
            raise Forbidden(
                f"template {template_id} is not allowlisted for chats; use list_templates"
            )

    async def after_ready(self, result: dict[str, Any]) -> dict[str, Any]:
        """ "On chat updated" after the agent-ready wait (docs/behaviour.md §5.6, Coder
        #25298): the turn reads AGENTS.md and primes the MCP cache so the following steps see
        both."""
        if "error" not in result and "agent_status" not in result and "workspace_name" in result:
            if result.get("status") != "stopped":
                await self.ctx.workspace_ready()
        return result

    async def started(self, ws: Workspace, build: Build | None) -> dict[str, Any]:
        """The result of a start: the agent report of ``build`` (or of the latest build when
        no build was needed)."""
        result: dict[str, Any] = {"started": True, "workspace_name": ws.name}
        latest = build or await self.deps.workspace_store.latest_build(ws.id)
        if latest is not None:
            result.update(await build_agent_report(self.deps, latest.id))
        if build is not None:
            result["build_id"] = str(build.id)
        else:
            result["no_build"] = True
        return result
