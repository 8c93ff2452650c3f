"""The provisioner: claims pending build jobs and runs them through a workspace backend.

One job at a time per claim loop iteration, several loops may run (other replicas).
A job's logs go to the job log table and, live, to the job's event channel. Cancel is
cooperative: the running backend call is cancelled when the job is marked canceling.
A TTL sweep stops workspaces whose activity is older than their TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from tether.cancellation import cancel_and_wait
from tether.clock import Clock
from tether.db.agents import AgentStore, NewAgent
from tether.db.pubsub import EventBus
from tether.db.templates import TemplateStore
from tether.db.users import UserStore
from tether.db.workspaces import BuildRequest, WorkspaceStore
from tether.domain.workspace import Build, JobStatus, Transition
from tether.errors import TetherError
from tether.ids import new_id
from tether.observability.hooks import observe_build
from tether.observability.metrics import Metrics
from tether.workspaces import events
from tether.workspaces.backends.base import AgentLaunch, WorkspaceBackend, WorkspaceRef
from tether.workspaces.reconcile import reconcile_backends
from tether.workspaces.template_parse import spec_from_json

log = logging.getLogger("tether.provisioner")


class Provisioner:
    def __init__(
        self,
        *,
        workspaces: WorkspaceStore,
        templates: TemplateStore,
        agents: AgentStore,
        users: UserStore,
        backends: dict[str, WorkspaceBackend],
        bus: EventBus,
        clock: Clock,
        poll_s: float = 1.0,
        ttl_sweep_s: float = 5.0,
        cancel_poll_s: float = 0.2,
        metrics: Metrics | None = None,
    ) -> None:
        self._ws = workspaces
        self._templates = templates
        self._agents = agents
        self._users = users
        self._backends = backends
        self._bus = bus
        self._clock = clock
        self._poll = poll_s
        self._ttl_sweep = ttl_sweep_s
        self._cancel_poll = cancel_poll_s
        self.worker_id = new_id()
        self._metrics = metrics or Metrics()

    async def run(self) -> None:
        """Claim and run jobs until cancelled; also sweeps TTLs."""
        await self._ws.requeue_orphans(self._clock.now() - timedelta(seconds=60))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(reconcile_backends(self._ws, self._backends))
            tg.create_task(self._claim_loop())
            tg.create_task(self._ttl_loop())

    async def _claim_loop(self) -> None:
        async with self._bus.subscribe(events.JOBS) as wake:
            while True:
                try:
                    ran = await self.run_once()
                except Exception:  # keep the loop alive; the job itself records failures
                    log.exception("provisioner iteration failed")
                    ran = False
                if not ran:
                    await wake.get(timeout=self._poll)

    async def _ttl_loop(self) -> None:
        while True:
            try:
                await self.sweep_ttl()
            except Exception:
                log.exception("TTL sweep failed")
            await self._clock.sleep(self._ttl_sweep)

    async def sweep_ttl(self) -> int:
        stopped = 0
        for ws in await self._ws.expired(self._clock.now()):
            latest = await self._ws.latest_build(ws.id)
            if latest is None:
                continue
            try:
                build, created = await self._ws.create_build(
                    BuildRequest(
                        workspace_id=ws.id,
                        transition=Transition.STOP,
                        template_version_id=latest.template_version_id,
                        parameters=latest.parameters,
                        initiator_id=ws.owner_id,
                        reason="autostop",
                    )
                )
            except TetherError:
                continue
            if created:
                stopped += 1
                await self._announce(build)
        return stopped

    async def run_once(self) -> bool:
        build = await self._ws.claim_job(self.worker_id)
        if build is None:
            return False
        await self._announce(build)
        error: str | None = None
        try:
            await observe_build(self._metrics, build, self._run_cancellable(build))
        except _Canceled:
            error = None
        except TetherError as exc:
            error = exc.message
        except Exception as exc:
            log.exception("build %s failed", build.id)
            error = f"internal error: {exc}"
        if error:
            await self._log(build, "error", error)
        with contextlib.suppress(TetherError):
            await self._ws.finish_job(build.job_id, error=error)
        final = await self._ws.get_build(build.id)
        await self._announce(final)
        return True

    async def _run_cancellable(self, build: Build) -> None:
        task = asyncio.create_task(self._execute(build))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._cancel_poll)
                if done:
                    task.result()
                    return
                await self._ws.heartbeat_job(build.job_id)
                job = await self._ws.get_job(build.job_id)
                if job.status is JobStatus.CANCELING:
                    await cancel_and_wait(task)
                    await self._log(build, "warn", "build canceled")
                    raise _Canceled
        finally:
            if not task.done():
                await cancel_and_wait(task)

    async def _execute(self, build: Build) -> None:
        ws = await self._ws.get(build.workspace_id)
        template = await self._templates.get(ws.template_id)
        version = await self._templates.get_version(build.template_version_id)
        spec = spec_from_json(version.spec)
        owner = await self._users.get_user(ws.owner_id)
        backend = self._backends.get(spec.backend)
        if backend is None:
            raise TetherError(f"no workspace backend named {spec.backend!r} is configured")
        ref = WorkspaceRef(
            workspace_id=ws.id,
            owner_name=owner.name,
            name=ws.name,
            template_name=template.name,
            parameters=dict(build.parameters),
            network=spec.network,
            backend_config=spec.docker.model_dump(mode="json") if spec.docker else {},
            build_id=build.id,
        )

        async def sink(level: str, line: str) -> None:
            await self._log(build, level, line)

        await sink("info", f"{build.transition.value} build #{build.build_number} of {ws.name}")
        previous = [b for b in await self._ws.list_builds(ws.id) if b.id != build.id]
        if build.transition is Transition.START:
            agents = await self._agents.create_for_build(
                build_id=build.id,
                workspace_id=ws.id,
                agents=[NewAgent(a.name, a.order, a.chat) for a in spec.agents],
                connection_timeout_s=spec.connection_timeout_s,
            )
            await self._agents_off(previous, sink)
            launches = [
                AgentLaunch(a.id, a.name, token, dial_secret=a.dial_secret or "")
                for a, token in agents
            ]
            await backend.start(ref, launches, sink)
            await sink("info", f"launched {len(launches)} agent(s)")
        elif build.transition is Transition.STOP:
            await backend.stop(ref, sink)
            await self._agents_off(previous, sink)
        else:
            await backend.delete(ref, sink)
            await self._agents_off(previous, sink)
            await self._ws.mark_deleted(ws.id)

    async def _agents_off(self, builds: list[Build], sink: Callable[[str, str], Awaitable[None]]):
        for b in builds:
            if b.transition is Transition.START:
                await self._agents.set_build_off(b.id)

    async def _log(self, build: Build, level: str, line: str) -> None:
        await self._ws.append_log(
            build.job_id, stage=build.transition.value, level=level, output=line
        )
        await self._bus.publish(
            events.job_channel(build.job_id), {"type": "log", "level": level, "output": line}
        )

    async def _announce(self, build: Build) -> None:
        payload = events.build_event(
            workspace_id=build.workspace_id,
            build_id=build.id,
            transition=build.transition.value,
            status=build.status.value,
        )
        await self._bus.publish(events.BUILDS, payload)
        await self._bus.publish(events.job_channel(build.job_id), payload)


class _Canceled(Exception):
    pass
