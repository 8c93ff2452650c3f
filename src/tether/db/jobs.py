"""The provisioner job queue: claim the oldest pending job, heartbeat, finish, cancel, requeue
the jobs of a dead provisioner, and the job's log. Every state change is a guarded update;
zero rows updated is a :class:`~tether.errors.Conflict`. A build and its job are read as one
row (:func:`builds_query`), here and in ``db/workspaces.py``.
"""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.engine import reading
from tether.db.fastexec import FastStatement
from tether.db.logs import read_log
from tether.db.prebuilt import bound
from tether.db.tables import provisioner_job_logs, provisioner_jobs, workspace_builds
from tether.domain.workspace import Build, Job, LogLine, Transition
from tether.errors import Conflict, NotFound

_BUILD_COLS: builtins.list[Any] = [
    workspace_builds,
    provisioner_jobs.c.created_at.label("job_created_at"),
    provisioner_jobs.c.started_at,
    provisioner_jobs.c.completed_at,
    provisioner_jobs.c.canceled_at,
    provisioner_jobs.c.error,
    provisioner_jobs.c.worker_id,
]


def build_from_row(row: Any) -> Build:
    job = Job(
        id=row.job_id,
        created_at=as_utc(row.job_created_at),  # type: ignore[arg-type]
        started_at=as_utc(row.started_at),
        completed_at=as_utc(row.completed_at),
        canceled_at=as_utc(row.canceled_at),
        error=row.error,
        worker_id=row.worker_id,
    )
    return Build(
        id=row.id,
        workspace_id=row.workspace_id,
        build_number=row.build_number,
        transition=Transition(row.transition),
        template_version_id=row.template_version_id,
        parameters=dict(row.parameters or {}),
        job_id=row.job_id,
        initiator_id=row.initiator_id,
        reason=row.reason,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        job=job,
    )


def builds_query() -> sa.Select[Any]:
    return sa.select(*_BUILD_COLS).join(
        provisioner_jobs, provisioner_jobs.c.id == workspace_builds.c.job_id
    )


_PENDING_JOB = sa.and_(
    provisioner_jobs.c.started_at.is_(None),
    provisioner_jobs.c.completed_at.is_(None),
    provisioner_jobs.c.canceled_at.is_(None),
    provisioner_jobs.c.error.is_(None),
)


def _claim_job(postgres: bool) -> sa.Update:
    oldest = sa.select(provisioner_jobs.c.id).where(_PENDING_JOB)
    oldest = oldest.order_by(provisioner_jobs.c.created_at).limit(1)
    if postgres:
        oldest = oldest.with_for_update(skip_locked=True)
    return (
        provisioner_jobs.update()
        .where(provisioner_jobs.c.id == oldest.scalar_subquery(), _PENDING_JOB)
        .values(
            started_at=bound(provisioner_jobs.c.started_at),
            worker_id=bound(provisioner_jobs.c.worker_id),
            updated_at=bound(provisioner_jobs.c.updated_at),
        )
        .returning(provisioner_jobs.c.id)
    )


# Built once (db/prebuilt.py): the provisioner's poll runs them every few hundred ms.
_ANY_PENDING_JOB = sa.select(provisioner_jobs.c.id).where(_PENDING_JOB).limit(1)
_ANY_PENDING_JOB_FAST = FastStatement(_ANY_PENDING_JOB)  # db/fastexec.py
_CLAIM_JOB = {False: _claim_job(False), True: _claim_job(True)}  # by "is PostgreSQL"


class JobQueue:
    """The provisioner jobs behind builds (the base of
    :class:`~tether.db.workspaces.WorkspaceStore`)."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def claim_job(self, worker_id: uuid.UUID) -> Build | None:
        """Claim the oldest pending job (pending → running) in one guarded statement."""
        now = self._clock.now()
        # The provisioner polls this every ``provisioner_poll_s``; almost always there is no
        # job. Look first in a read-only connection (no write transaction, no write lock for
        # the chat worker to wait on; half the CPU of the guarded UPDATE) and claim only
        # when a job is pending. The UPDATE stays guarded: another replica may win the race.
        async with reading(self._engine) as conn:
            if await _ANY_PENDING_JOB_FAST.first(conn, {}) is None:
                return None
        values = {
            "p_started_at": now,
            "p_worker_id": worker_id,
            "p_updated_at": now,
        }
        async with self._engine.begin() as conn:
            claim = _CLAIM_JOB[conn.dialect.name == "postgresql"]
            job_id = (await conn.execute(claim, values)).scalar()
            if job_id is None:
                return None
            row = (
                await conn.execute(builds_query().where(workspace_builds.c.job_id == job_id))
            ).first()
        return build_from_row(row) if row is not None else None

    async def finish_job(self, job_id: uuid.UUID, *, error: str | None = None) -> Job:
        """running|canceling → succeeded|failed|canceled. Guarded: a finished job conflicts."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            updated = (
                await conn.execute(
                    provisioner_jobs.update()
                    .where(
                        provisioner_jobs.c.id == job_id,
                        provisioner_jobs.c.completed_at.is_(None),
                    )
                    .values(completed_at=now, error=error or None, updated_at=now)
                    .returning(provisioner_jobs.c.id)
                )
            ).scalar()
            if updated is None:
                raise Conflict(f"job {job_id} is already finished")
            return await self._job(conn, job_id)

    async def cancel_job(self, job_id: uuid.UUID) -> Job:
        """pending → canceled at once; running → canceling (the provisioner finishes it)."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            done = (
                await conn.execute(
                    provisioner_jobs.update()
                    .where(
                        provisioner_jobs.c.id == job_id,
                        provisioner_jobs.c.started_at.is_(None),
                        provisioner_jobs.c.completed_at.is_(None),
                        provisioner_jobs.c.canceled_at.is_(None),
                    )
                    .values(canceled_at=now, completed_at=now, updated_at=now)
                    .returning(provisioner_jobs.c.id)
                )
            ).scalar()
            if done is None:
                done = (
                    await conn.execute(
                        provisioner_jobs.update()
                        .where(
                            provisioner_jobs.c.id == job_id,
                            provisioner_jobs.c.completed_at.is_(None),
                            provisioner_jobs.c.canceled_at.is_(None),
                        )
                        .values(canceled_at=now, updated_at=now)
                        .returning(provisioner_jobs.c.id)
                    )
                ).scalar()
            if done is None:
                raise Conflict(f"job {job_id} cannot be canceled: it is not in progress")
            return await self._job(conn, job_id)

    async def requeue_orphans(self, older_than: datetime) -> int:
        """Running jobs not updated since ``older_than`` (their provisioner died) → pending."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                provisioner_jobs.update()
                .where(
                    provisioner_jobs.c.started_at.is_not(None),
                    provisioner_jobs.c.completed_at.is_(None),
                    provisioner_jobs.c.canceled_at.is_(None),
                    provisioner_jobs.c.updated_at < older_than,
                )
                .values(started_at=None, worker_id=None, updated_at=self._clock.now())
            )
        return int(result.rowcount or 0)

    async def heartbeat_job(self, job_id: uuid.UUID) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                provisioner_jobs.update()
                .where(provisioner_jobs.c.id == job_id)
                .values(updated_at=self._clock.now())
            )

    async def get_job(self, job_id: uuid.UUID) -> Job:
        async with reading(self._engine) as conn:
            return await self._job(conn, job_id)

    async def _job(self, conn: AsyncConnection, job_id: uuid.UUID) -> Job:
        row = (
            await conn.execute(sa.select(provisioner_jobs).where(provisioner_jobs.c.id == job_id))
        ).first()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return Job(
            id=row.id,
            created_at=as_utc(row.created_at),  # type: ignore[arg-type]
            started_at=as_utc(row.started_at),
            completed_at=as_utc(row.completed_at),
            canceled_at=as_utc(row.canceled_at),
            error=row.error,
            worker_id=row.worker_id,
        )

    async def append_log(self, job_id: uuid.UUID, *, stage: str, level: str, output: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                provisioner_job_logs.insert().values(
                    job_id=job_id,
                    created_at=self._clock.now(),
                    stage=stage,
                    level=level,
                    output=output,
                )
            )

    async def job_logs(self, job_id: uuid.UUID, *, after_id: int = 0) -> builtins.list[LogLine]:
        return await read_log(
            self._engine,
            provisioner_job_logs,
            provisioner_job_logs.c.job_id == job_id,
            after_id=after_id,
            source="stage",
        )
