"""Workspace operations (create, start, stop, delete, rebuild, show) with access control.

Every operation is a build plus a provisioner job; this module only records intent and
publishes events, the provisioner does the work. Members see only their own workspaces:
anything else is :class:`NotFound` (no existence leak)."""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from tether.clock import Clock
from tether.db.agents import AgentStore
from tether.db.pubsub import EventBus
from tether.db.templates import TemplateStore
from tether.db.workspaces import BuildRequest, WorkspaceStore
from tether.domain.agent import AgentStatus, WorkspaceAgent
from tether.domain.user import User
from tether.domain.workspace import Build, JobStatus, Template, Transition, Workspace
from tether.errors import Conflict, InvalidInput, NotFound, Timeout
from tether.workspaces import events
from tether.workspaces.startrunning import StartAction, StartOutcome, dead_agents
from tether.workspaces.status import compute_agent_status
from tether.workspaces.template_parse import spec_from_json
from tether.workspaces.templates import validate_parameters

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


@dataclass(frozen=True)
class AgentView:
    agent: WorkspaceAgent
    status: AgentStatus


@dataclass(frozen=True)
class WorkspaceView:
    workspace: Workspace
    template: Template
    latest_build: Build | None
    agents: list[AgentView]
    deadline: datetime | None

    @property
    def state(self) -> str:
        """running | stopped | deleted | starting | stopping | deleting | failed | canceled"""
        build = self.latest_build
        if self.workspace.deleted:
            return "deleted"
        if build is None:
            return "pending"
        status = build.status
        if status is JobStatus.SUCCEEDED:
            return {"start": "running", "stop": "stopped", "delete": "deleted"}[build.transition]
        if status.in_progress:
            return {"start": "starting", "stop": "stopping", "delete": "deleting"}[build.transition]
        return status.value


class WorkspaceService:
    def __init__(
        self,
        *,
        workspaces: WorkspaceStore,
        templates: TemplateStore,
        agents: AgentStore,
        bus: EventBus,
        clock: Clock,
        inactive_disconnect_s: float,
        build_poll_s: float = 2.0,
        agent_dead_after_s: float = 3.0,
    ) -> None:
        self._ws = workspaces
        self._templates = templates
        self._agents = agents
        self._bus = bus
        self._clock = clock
        self._inactive = inactive_disconnect_s
        self._poll = build_poll_s
        self._dead_after = agent_dead_after_s

    # --- access ---------------------------------------------------------------------------

    async def get(self, actor: User, workspace_id: uuid.UUID) -> Workspace:
        ws = await self._ws.get(workspace_id, include_deleted=False)
        if ws.owner_id != actor.id and not actor.is_admin:
            raise NotFound(f"workspace {workspace_id} not found")
        return ws

    async def resolve(self, actor: User, ref: str) -> Workspace:
        """A workspace by id or by the actor's workspace name."""
        try:
            return await self.get(actor, uuid.UUID(ref))
        except ValueError:
            return await self._ws.get_by_name(actor.id, ref)

    async def list(self, actor: User, *, all_users: bool = False) -> list[Workspace]:
        owner = None if (all_users and actor.is_admin) else actor.id
        return await self._ws.list(owner_id=owner)

    # --- operations -----------------------------------------------------------------------

    async def create(
        self,
        actor: User,
        *,
        template: Template,
        name: str,
        parameters: dict[str, str] | None = None,
        ttl_ms: int | None = None,
        reason: str = "initiator",
    ) -> tuple[Workspace, Build]:
        if not NAME_RE.match(name):
            raise InvalidInput(
                f"invalid workspace name {name!r}: use lower-case letters, digits and dashes",
                field="name",
            )
        if template.deprecated:
            raise InvalidInput(f"template {template.name!r} is deprecated", field="template")
        if template.active_version_id is None:
            raise InvalidInput(f"template {template.name!r} has no version", field="template")
        version = await self._templates.get_version(template.active_version_id)
        spec = spec_from_json(version.spec)
        values = validate_parameters(spec, dict(parameters or {}))
        if ttl_ms is not None and ttl_ms <= 0:
            raise InvalidInput("ttl_ms must be positive", field="ttl_ms")
        effective_ttl = ttl_ms if ttl_ms is not None else spec.ttl_ms
        ws, build = await self._ws.create(
            owner_id=actor.id,
            template_id=template.id,
            name=name,
            ttl_ms=effective_ttl,
            first_build=BuildRequest(
                workspace_id=uuid.UUID(int=0),  # replaced by the store with the new id
                transition=Transition.START,
                template_version_id=version.id,
                parameters=values,
                initiator_id=actor.id,
                reason=reason,
            ),
        )
        assert build is not None
        await self._announce(build)
        return ws, build

    async def transition(
        self,
        actor: User,
        workspace_id: uuid.UUID,
        transition: Transition,
        *,
        reason: str = "initiator",
        parameters: dict[str, str] | None = None,
    ) -> tuple[Build, bool]:
        """Request a start/stop/delete build. Returns ``(build, created)``; a concurrent
        request of the same kind gets the in-progress build, of another kind a Conflict."""
        ws = await self.get(actor, workspace_id)
        latest = await self._ws.latest_build(ws.id)
        template = await self._templates.get(ws.template_id)
        if transition is Transition.START and template.active_version_id is not None:
            version_id = template.active_version_id
        elif latest is not None:
            version_id = latest.template_version_id
        else:
            raise Conflict("workspace has no template version")
        previous = latest.parameters if latest is not None else {}
        values = dict(previous)
        if parameters:
            spec = spec_from_json((await self._templates.get_version(version_id)).spec)
            values = validate_parameters(spec, {**previous, **parameters}, previous=previous)
        build, created = await self._ws.create_build(
            BuildRequest(
                workspace_id=ws.id,
                transition=transition,
                template_version_id=version_id,
                parameters=values,
                initiator_id=actor.id,
                reason=reason,
            )
        )
        if created:
            await self._announce(build)
        return build, created

    async def start(
        self,
        actor: User,
        workspace_id: uuid.UUID,
        *,
        timeout_s: float,
        reason: str = "initiator",
        parameters: dict[str, str] | None = None,
    ) -> StartOutcome:
        """Start means running (:mod:`tether.workspaces.startrunning`): a workspace whose
        latest start build succeeded but whose agent is dead is rebuilt (stop + start);
        otherwise this is :meth:`transition` to start. The outcome says which."""
        ws = await self.get(actor, workspace_id)
        latest = await self._ws.latest_build(ws.id)
        if (
            latest is not None
            and latest.transition is Transition.START
            and latest.status is JobStatus.SUCCEEDED
            and not parameters
        ):
            dead = await dead_agents(
                latest.id,
                self._agents.for_build,
                self._clock,
                inactive_s=self._inactive,
                dead_after_s=self._dead_after,
            )
            if not dead:
                return StartOutcome(latest, StartAction.ALREADY_RUNNING, False, "already running")
            names = tuple(a.name for a in dead)
            build = await self.rebuild(actor, ws.id, timeout_s=timeout_s)
            return StartOutcome(
                build,
                StartAction.REBUILT,
                True,
                f"the build said running but agent {', '.join(names)} was dead; "
                f"rebuilt it (stop + start, build #{build.build_number})",
                names,
            )
        build, created = await self.transition(
            actor, ws.id, Transition.START, reason=reason, parameters=parameters
        )
        if created:
            return StartOutcome(build, StartAction.STARTED, True, "started")
        if build.status.in_progress:
            return StartOutcome(build, StartAction.IN_PROGRESS, False, "a start is in progress")
        return StartOutcome(build, StartAction.ALREADY_RUNNING, False, "already running")

    async def rebuild(self, actor: User, workspace_id: uuid.UUID, *, timeout_s: float) -> Build:
        """Stop (if running), wait for the stop, then start: the new build gets new agents."""
        latest = await self._ws.latest_build((await self.get(actor, workspace_id)).id)
        if latest is not None and latest.transition is Transition.START:
            if latest.status.in_progress:
                await self.wait_for_build(latest.id, timeout_s=timeout_s)
                latest = await self._ws.get_build(latest.id)
            if latest.status is JobStatus.SUCCEEDED:
                stop, _ = await self.transition(actor, workspace_id, Transition.STOP)
                await self.wait_for_build(stop.id, timeout_s=timeout_s)
        build, _ = await self.transition(actor, workspace_id, Transition.START)
        return build

    async def cancel(self, actor: User, workspace_id: uuid.UUID) -> Build:
        ws = await self.get(actor, workspace_id)
        latest = await self._ws.latest_build(ws.id)
        if latest is None or not latest.status.in_progress:
            raise Conflict("no build in progress to cancel")
        await self._ws.cancel_job(latest.job_id)
        build = await self._ws.get_build(latest.id)
        await self._announce(build)
        return build

    async def touch(self, workspace_id: uuid.UUID) -> None:
        await self._ws.touch(workspace_id)

    # --- views ------------------------------------------------------------------------------

    async def view(self, actor: User, workspace_id: uuid.UUID) -> WorkspaceView:
        ws = await self.get(actor, workspace_id)
        return await self.view_of(ws)

    async def view_of(self, ws: Workspace) -> WorkspaceView:
        template = await self._templates.get(ws.template_id)
        latest = await self._ws.latest_build(ws.id)
        agents = await self._agents.for_build(latest.id) if latest is not None else []
        now = self._clock.now()
        views = [AgentView(a, compute_agent_status(a, now, self._inactive)) for a in agents]
        deadline = None
        if (
            ws.ttl_ms
            and latest is not None
            and latest.transition is Transition.START
            and latest.status is JobStatus.SUCCEEDED
        ):
            # A ttl past the calendar's end (stored before ttl_ms was bounded, or written
            # by hand) means no deadline; it must not fail everyone's listing.
            with contextlib.suppress(OverflowError):
                deadline = ws.last_used_at + timedelta(milliseconds=ws.ttl_ms)
        return WorkspaceView(ws, template, latest, views, deadline)

    async def wait_for_build(self, build_id: uuid.UUID, *, timeout_s: float) -> Build:
        """Wait until the build's job leaves pending/running/canceling. Event-driven with a
        polling fallback (events are hints); bounded by ``timeout_s``."""
        deadline = self._clock.monotonic() + timeout_s
        build = await self._ws.get_build(build_id)
        async with self._bus.subscribe(events.job_channel(build.job_id)) as sub:
            while True:
                build = await self._ws.get_build(build_id)
                if not build.status.in_progress:
                    return build
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    raise Timeout(
                        f"timed out waiting for build #{build.build_number} after {timeout_s:g}s",
                        build_id=str(build_id),
                    )
                await sub.get(timeout=min(self._poll, remaining))

    async def _announce(self, build: Build) -> None:
        await self._bus.publish(
            events.BUILDS,
            events.build_event(
                workspace_id=build.workspace_id,
                build_id=build.id,
                transition=build.transition.value,
                status=build.status.value,
            ),
        )
        if build.status is JobStatus.PENDING:
            await self._bus.publish(events.JOBS, {"job_id": str(build.job_id)})
