"""Workspace store: workspaces, their builds and (``db/jobs.py``) the provisioner jobs
behind them.

Builds are numbered per workspace (unique ``(workspace_id, build_number)``), so two
concurrent requests can never both create build N+1: the loser sees the constraint
violation, re-reads and gets the in-progress build (or a conflict for another transition).
Job state changes are guarded updates; zero rows updated is a :class:`Conflict`.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.clock import as_utc
from tether.db.engine import reading
from tether.db.jobs import JobQueue, build_from_row, builds_query
from tether.db.prebuilt import bound, bound_list
from tether.db.tables import provisioner_jobs, workspace_builds, workspaces
from tether.domain.workspace import Build, JobStatus, Transition, Workspace
from tether.errors import Conflict, NotFound
from tether.ids import new_id

# Built once (db/prebuilt.py): the chat worker bumps its workspaces with every heartbeat.
_TOUCH_MANY = (
    workspaces.update()
    .where(workspaces.c.id.in_(bound_list(workspaces.c.id, "ids")), workspaces.c.deleted.is_(False))
    .values(last_used_at=bound(workspaces.c.last_used_at))
)

_later = workspace_builds.alias("later")
_LATEST = (
    sa.select(sa.func.max(_later.c.build_number))
    .where(_later.c.workspace_id == workspaces.c.id)
    .correlate(workspaces)
    .scalar_subquery()
)


def _workspace(row: Any) -> Workspace:
    return Workspace(
        id=row.id,
        owner_id=row.owner_id,
        template_id=row.template_id,
        name=row.name,
        ttl_ms=row.ttl_ms,
        last_used_at=as_utc(row.last_used_at),  # type: ignore[arg-type]
        deleted=row.deleted,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class BuildRequest:
    workspace_id: uuid.UUID
    transition: Transition
    template_version_id: uuid.UUID
    parameters: dict[str, str]
    initiator_id: uuid.UUID
    reason: str = "initiator"


class WorkspaceStore(JobQueue):
    """Workspaces and their builds; the provisioner job queue comes from :class:`JobQueue`."""

    # --- workspaces -----------------------------------------------------------------------

    async def create(
        self,
        *,
        owner_id: uuid.UUID,
        template_id: uuid.UUID,
        name: str,
        ttl_ms: int | None,
        first_build: BuildRequest | None = None,
    ) -> tuple[Workspace, Build | None]:
        """Insert a workspace (and optionally its first build) in one transaction."""
        now = self._clock.now()
        workspace_id = new_id()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    workspaces.insert().values(
                        id=workspace_id,
                        owner_id=owner_id,
                        template_id=template_id,
                        name=name,
                        ttl_ms=ttl_ms,
                        last_used_at=now,
                        deleted=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
                build = None
                if first_build is not None:
                    req = BuildRequest(
                        workspace_id=workspace_id,
                        transition=first_build.transition,
                        template_version_id=first_build.template_version_id,
                        parameters=first_build.parameters,
                        initiator_id=first_build.initiator_id,
                        reason=first_build.reason,
                    )
                    build_id = await self._insert_build(conn, req, number=1, now=now)
                    build = await self._get_build(conn, build_id)
                row = (
                    await conn.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id))
                ).one()
        except IntegrityError as exc:
            raise Conflict(f"a workspace named {name!r} already exists", field="name") from exc
        return _workspace(row), build

    async def get(self, workspace_id: uuid.UUID, *, include_deleted: bool = True) -> Workspace:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id))
            ).first()
        if row is None or (row.deleted and not include_deleted):
            raise NotFound(f"workspace {workspace_id} not found")
        return _workspace(row)

    async def get_by_name(self, owner_id: uuid.UUID, name: str) -> Workspace:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(
                    sa.select(workspaces).where(
                        workspaces.c.owner_id == owner_id,
                        workspaces.c.name == name,
                        workspaces.c.deleted.is_(False),
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"workspace {name!r} not found")
        return _workspace(row)

    async def list(self, *, owner_id: uuid.UUID | None = None) -> builtins.list[Workspace]:
        query = sa.select(workspaces).where(workspaces.c.deleted.is_(False))
        if owner_id is not None:
            query = query.where(workspaces.c.owner_id == owner_id)
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query.order_by(workspaces.c.created_at))).all()
        return [_workspace(r) for r in rows]

    async def mark_deleted(self, workspace_id: uuid.UUID) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                workspaces.update()
                .where(workspaces.c.id == workspace_id)
                .values(deleted=True, updated_at=self._clock.now())
            )

    async def touch(self, workspace_id: uuid.UUID) -> None:
        """Record activity (extends the TTL deadline)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                workspaces.update()
                .where(workspaces.c.id == workspace_id)
                .values(last_used_at=self._clock.now())
            )

    async def touch_many(self, workspace_ids: Iterable[uuid.UUID]) -> None:
        """Record activity on several live workspaces in one statement (the chat worker's
        usage bump, docs/behaviour.md §3.1 / WK-7). Deleted workspaces and unknown ids are
        skipped."""
        ids = sorted(set(workspace_ids))
        if not ids:
            return
        values = {"p_ids": ids, "p_last_used_at": self._clock.now()}
        async with self._engine.begin() as conn:
            await conn.execute(_TOUCH_MANY, values)

    async def expired(self, now: datetime) -> builtins.list[Workspace]:
        """Live workspaces with a TTL whose latest build is a successful start and whose
        last activity is older than the TTL (filtered in Python: portable interval math)."""
        async with reading(self._engine) as conn:
            rows = (
                await conn.execute(
                    sa.select(workspaces)
                    .select_from(workspaces)
                    .join(
                        workspace_builds,
                        sa.and_(
                            workspace_builds.c.workspace_id == workspaces.c.id,
                            workspace_builds.c.build_number == _LATEST,
                        ),
                    )
                    .join(provisioner_jobs, provisioner_jobs.c.id == workspace_builds.c.job_id)
                    .where(
                        workspaces.c.deleted.is_(False),
                        workspaces.c.ttl_ms.is_not(None),
                        workspace_builds.c.transition == Transition.START.value,
                        provisioner_jobs.c.completed_at.is_not(None),
                        provisioner_jobs.c.error.is_(None),
                    )
                )
            ).all()
        result = []
        for row in rows:
            ws = _workspace(row)
            if ws.ttl_ms and (now - ws.last_used_at).total_seconds() * 1000 >= ws.ttl_ms:
                result.append(ws)
        return result

    # --- builds -----------------------------------------------------------------------

    async def _insert_build(
        self, conn: AsyncConnection, req: BuildRequest, *, number: int, now: datetime
    ) -> uuid.UUID:
        job_id = new_id()
        build_id = new_id()
        await conn.execute(
            provisioner_jobs.insert().values(
                id=job_id, kind="workspace_build", created_at=now, updated_at=now
            )
        )
        await conn.execute(
            workspace_builds.insert().values(
                id=build_id,
                workspace_id=req.workspace_id,
                build_number=number,
                transition=req.transition.value,
                template_version_id=req.template_version_id,
                parameters=req.parameters,
                job_id=job_id,
                initiator_id=req.initiator_id,
                reason=req.reason,
                created_at=now,
            )
        )
        return build_id

    async def _get_build(self, conn: AsyncConnection, build_id: uuid.UUID) -> Build:
        row = (await conn.execute(builds_query().where(workspace_builds.c.id == build_id))).first()
        if row is None:
            raise NotFound(f"build {build_id} not found")
        return build_from_row(row)

    async def _latest(self, conn: AsyncConnection, workspace_id: uuid.UUID) -> Build | None:
        row = (
            await conn.execute(
                builds_query()
                .where(workspace_builds.c.workspace_id == workspace_id)
                .order_by(workspace_builds.c.build_number.desc())
                .limit(1)
            )
        ).first()
        return build_from_row(row) if row is not None else None

    async def create_build(self, req: BuildRequest) -> tuple[Build, bool]:
        """Start a new build unless one is in progress.

        Returns ``(build, created)``. An in-progress build of the same transition is
        returned with ``created=False``; one of another transition raises
        :class:`Conflict`. Exactly one of N concurrent callers creates the build."""
        for _ in range(3):
            now = self._clock.now()
            try:
                async with self._engine.begin() as conn:
                    latest = await self._latest(conn, req.workspace_id)
                    if latest is not None and latest.status.in_progress:
                        return self._in_progress(latest, req.transition), False
                    if (
                        latest is not None
                        and latest.transition is req.transition
                        and latest.status is JobStatus.SUCCEEDED
                    ):
                        # Already where it was asked to go: starting a running workspace
                        # (or stopping a stopped one) is a no-op, so N concurrent requests
                        # make one build however fast the first finishes. Restarting is
                        # an explicit rebuild (stop, then start).
                        return latest, False
                    number = (latest.build_number if latest else 0) + 1
                    build_id = await self._insert_build(conn, req, number=number, now=now)
                    return await self._get_build(conn, build_id), True
            except IntegrityError:
                # Someone else inserted build N+1 first: re-read and report theirs.
                continue
        raise Conflict("workspace is busy with another build; try again")

    @staticmethod
    def _in_progress(latest: Build, transition: Transition) -> Build:
        if latest.transition is transition:
            return latest
        raise Conflict(
            f"build #{latest.build_number} ({latest.transition.value}) is still "
            f"{latest.status.value}; wait for it or cancel it",
            build_id=str(latest.id),
        )

    async def get_build(self, build_id: uuid.UUID) -> Build:
        async with reading(self._engine) as conn:
            return await self._get_build(conn, build_id)

    async def latest_build(self, workspace_id: uuid.UUID) -> Build | None:
        async with reading(self._engine) as conn:
            return await self._latest(conn, workspace_id)

    async def list_builds(self, workspace_id: uuid.UUID) -> builtins.list[Build]:
        async with reading(self._engine) as conn:
            rows = (
                await conn.execute(
                    builds_query()
                    .where(workspace_builds.c.workspace_id == workspace_id)
                    .order_by(workspace_builds.c.build_number)
                )
            ).all()
        return [build_from_row(r) for r in rows]

    async def build_for_job(self, job_id: uuid.UUID) -> Build:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(builds_query().where(workspace_builds.c.job_id == job_id))
            ).first()
        if row is None:
            raise NotFound(f"no build for job {job_id}")
        return build_from_row(row)
