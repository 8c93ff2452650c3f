"""Workspace agent store: agent rows (new ids for every start build), their session
timestamps, lifecycle (compare-and-set through the transition table) and logs.

No dial secret is stored: each row's ``dial_secret`` is derived from the agent id by the
``dial_secrets`` function the store is built with (:meth:`tether.serverkey.ServerKey.dial_secret`),
so a copy of the database alone cannot dial an agent."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.engine import reading
from tether.db.logs import read_log
from tether.db.prebuilt import bound, bound_list
from tether.db.tables import workspace_agent_logs, workspace_agents, workspace_builds
from tether.domain.agent import Lifecycle, WorkspaceAgent, lifecycle_sources
from tether.domain.workspace import LogLine
from tether.errors import Conflict, NotFound, Unauthorized
from tether.ids import hash_token, new_id, new_token

# Built once (db/prebuilt.py): the agents' pings are flushed every few seconds.
_PING_MANY = (
    workspace_agents.update()
    .where(
        workspace_agents.c.id.in_(bound_list(workspace_agents.c.id, "ids")),
        sa.or_(
            workspace_agents.c.disconnected_at.is_(None),
            workspace_agents.c.disconnected_at
            < bound(workspace_agents.c.disconnected_at, "before"),
        ),
    )
    .values(last_connected_at=bound(workspace_agents.c.last_connected_at))
)


@dataclass(frozen=True)
class NewAgent:
    name: str
    display_order: int
    chat: bool


DialSecrets = Callable[[uuid.UUID], str]


def _agent(row: Any, dial_secrets: DialSecrets | None) -> WorkspaceAgent:
    return WorkspaceAgent(
        id=row.id,
        build_id=row.build_id,
        workspace_id=row.workspace_id,
        name=row.name,
        display_order=row.display_order,
        chat=row.chat,
        parent_id=row.parent_id,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        first_connected_at=as_utc(row.first_connected_at),
        last_connected_at=as_utc(row.last_connected_at),
        disconnected_at=as_utc(row.disconnected_at),
        connection_timeout_s=row.connection_timeout_s,
        lifecycle_state=Lifecycle(row.lifecycle_state),
        lifecycle_changed_at=as_utc(row.lifecycle_changed_at),  # type: ignore[arg-type]
        dial_address=row.dial_address,
        dial_secret=dial_secrets(row.id) if dial_secrets is not None else None,
        os=row.os,
        directory=row.directory,
        version=row.version,
    )


class AgentStore:
    def __init__(
        self, engine: AsyncEngine, clock: Clock, dial_secrets: DialSecrets | None = None
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._dial_secrets = dial_secrets

    def _agent(self, row: Any) -> WorkspaceAgent:
        return _agent(row, self._dial_secrets)

    async def create_for_build(
        self,
        *,
        build_id: uuid.UUID,
        workspace_id: uuid.UUID,
        agents: list[NewAgent],
        connection_timeout_s: int,
    ) -> list[tuple[WorkspaceAgent, str]]:
        """Create fresh agent rows (new ids, new tokens) for a start build.
        Returns each agent with its plaintext session token (only its hash is stored)."""
        now = self._clock.now()
        created: list[tuple[uuid.UUID, str]] = []
        async with self._engine.begin() as conn:
            for spec in agents:
                agent_id, token = new_id(), new_token("agt")
                await conn.execute(
                    workspace_agents.insert().values(
                        id=agent_id,
                        build_id=build_id,
                        workspace_id=workspace_id,
                        name=spec.name,
                        display_order=spec.display_order,
                        chat=spec.chat,
                        parent_id=None,
                        token_hash=hash_token(token),
                        created_at=now,
                        connection_timeout_s=connection_timeout_s,
                        lifecycle_state=Lifecycle.CREATED.value,
                        lifecycle_changed_at=now,
                    )
                )
                created.append((agent_id, token))
        return [(await self.get(agent_id), token) for agent_id, token in created]

    async def get(self, agent_id: uuid.UUID) -> WorkspaceAgent:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(
                    sa.select(workspace_agents).where(workspace_agents.c.id == agent_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"agent {agent_id} not found")
        return self._agent(row)

    async def find(self, agent_id: uuid.UUID) -> WorkspaceAgent | None:
        try:
            return await self.get(agent_id)
        except NotFound:
            return None

    async def authenticate(self, token: str) -> WorkspaceAgent:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(
                    sa.select(workspace_agents).where(
                        workspace_agents.c.token_hash == hash_token(token)
                    )
                )
            ).first()
        if row is None:
            raise Unauthorized("unknown agent token")
        return self._agent(row)

    async def for_build(self, build_id: uuid.UUID) -> list[WorkspaceAgent]:
        async with reading(self._engine) as conn:
            rows = (
                await conn.execute(
                    sa.select(workspace_agents)
                    .where(workspace_agents.c.build_id == build_id)
                    .order_by(workspace_agents.c.display_order, workspace_agents.c.name)
                )
            ).all()
        return [self._agent(r) for r in rows]

    async def latest_build_agents(self, workspace_id: uuid.UUID) -> list[WorkspaceAgent]:
        """Agents of the workspace's latest build if that build is a start (a stop or
        delete build has no agents). One indexed query."""
        latest = (
            sa.select(workspace_builds.c.id, workspace_builds.c.transition)
            .where(workspace_builds.c.workspace_id == workspace_id)
            .order_by(workspace_builds.c.build_number.desc())
            .limit(1)
            .subquery()
        )
        async with reading(self._engine) as conn:
            rows = (
                await conn.execute(
                    sa.select(workspace_agents)
                    .join(latest, latest.c.id == workspace_agents.c.build_id)
                    .where(latest.c.transition == "start")
                    .order_by(workspace_agents.c.display_order, workspace_agents.c.name)
                )
            ).all()
        return [self._agent(r) for r in rows]

    # --- session ------------------------------------------------------------------------

    async def connected(
        self,
        agent_id: uuid.UUID,
        *,
        address: str,
        os: str | None,
        directory: str | None,
        version: str | None,
    ) -> WorkspaceAgent:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            await conn.execute(
                workspace_agents.update()
                .where(workspace_agents.c.id == agent_id)
                .values(
                    first_connected_at=sa.func.coalesce(workspace_agents.c.first_connected_at, now),
                    last_connected_at=now,
                    dial_address=address,
                    os=os,
                    directory=directory,
                    version=version,
                )
            )
        return await self.get(agent_id)

    async def ping(self, agent_id: uuid.UUID) -> None:
        await self.ping_many([agent_id])

    async def ping_many(self, agent_ids: Collection[uuid.UUID]) -> None:
        """Record that these agents' sessions are alive, in one statement. An agent whose
        disconnect was recorded after this moment keeps its disconnect (a batched ping must
        never make a dropped session look connected)."""
        if not agent_ids:
            return
        now = self._clock.now()
        values = {"p_ids": list(agent_ids), "p_before": now, "p_last_connected_at": now}
        async with self._engine.begin() as conn:
            await conn.execute(_PING_MANY, values)

    async def disconnected(self, agent_id: uuid.UUID, at: datetime | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                workspace_agents.update()
                .where(workspace_agents.c.id == agent_id)
                .values(disconnected_at=at or self._clock.now())
            )

    async def set_lifecycle(self, agent_id: uuid.UUID, state: Lifecycle) -> WorkspaceAgent:
        """Compare-and-set through the lifecycle table. Re-entering the current state is a
        no-op (agents re-send it on reconnect); an illegal transition is a Conflict."""
        sources = [s.value for s in lifecycle_sources(state)]
        async with self._engine.begin() as conn:
            result = await conn.execute(
                workspace_agents.update()
                .where(
                    workspace_agents.c.id == agent_id,
                    workspace_agents.c.lifecycle_state.in_(sources),
                )
                .values(lifecycle_state=state.value, lifecycle_changed_at=self._clock.now())
            )
        agent = await self.get(agent_id)
        if not result.rowcount and agent.lifecycle_state is not state:
            raise Conflict(
                f"agent lifecycle cannot go from {agent.lifecycle_state.value} to {state.value}"
            )
        return agent

    async def set_build_off(self, build_id: uuid.UUID) -> None:
        """Record every agent of a build as off (the backend stopped its processes)."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            await conn.execute(
                workspace_agents.update()
                .where(
                    workspace_agents.c.build_id == build_id,
                    workspace_agents.c.lifecycle_state != Lifecycle.OFF.value,
                )
                .values(lifecycle_state=Lifecycle.OFF.value, lifecycle_changed_at=now)
            )
            await conn.execute(
                workspace_agents.update()
                .where(
                    workspace_agents.c.build_id == build_id,
                    workspace_agents.c.disconnected_at.is_(None),
                    workspace_agents.c.first_connected_at.is_not(None),
                )
                .values(disconnected_at=now)
            )

    # --- logs ---------------------------------------------------------------------------

    async def append_logs(
        self, agent_id: uuid.UUID, *, source: str, level: str, lines: list[str]
    ) -> None:
        if not lines:
            return
        now = self._clock.now()
        async with self._engine.begin() as conn:
            await conn.execute(
                workspace_agent_logs.insert(),
                [
                    {
                        "agent_id": agent_id,
                        "created_at": now,
                        "source": source,
                        "level": level,
                        "output": line,
                    }
                    for line in lines
                ],
            )

    async def logs(self, agent_id: uuid.UUID, *, after_id: int = 0) -> list[LogLine]:
        return await read_log(
            self._engine,
            workspace_agent_logs,
            workspace_agent_logs.c.agent_id == agent_id,
            after_id=after_id,
            source="source",
        )
