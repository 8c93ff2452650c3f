"""Batched agent pings (``PingBatcher`` + ``AgentStore.ping_many``) on both dialects."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.agents import AgentStore, NewAgent
from tether.db.engine import StatementCounter
from tether.db.templates import TemplateStore
from tether.db.users import UserStore
from tether.db.workspaces import BuildRequest, WorkspaceStore
from tether.domain.agent import AgentStatus
from tether.domain.workspace import Transition
from tether.testing.clock import FakeClock
from tether.workspaces.pings import PingBatcher
from tether.workspaces.status import compute_agent_status


async def _agents(engine: AsyncEngine, clock: FakeClock, n: int):
    owner = await UserStore(engine, clock).create_user("p", "member")
    template, version = await TemplateStore(engine, clock).push(
        spec={"name": "t"}, source="name: t", user_id=owner.id
    )
    ws, build = await WorkspaceStore(engine, clock).create(
        owner_id=owner.id,
        template_id=template.id,
        name="w",
        ttl_ms=None,
        first_build=BuildRequest(
            workspace_id=owner.id,
            transition=Transition.START,
            template_version_id=version.id,
            parameters={},
            initiator_id=owner.id,
        ),
    )
    assert build is not None
    store = AgentStore(engine, clock)
    created = await store.create_for_build(
        build_id=build.id,
        workspace_id=ws.id,
        agents=[NewAgent(f"a{i}", i, i == 0) for i in range(n)],
        connection_timeout_s=120,
    )
    for agent, _ in created:
        await store.connected(
            agent.id, address="127.0.0.1:1", os="linux", directory=None, version="1"
        )
    return store, [a.id for a, _ in created]


async def test_pings_of_many_agents_are_one_statement(engine: AsyncEngine):
    clock = FakeClock()
    store, ids = await _agents(engine, clock, 20)
    pings = PingBatcher(store, clock, flush_s=1.0)
    clock.advance(5)
    for agent_id in ids:
        pings.ping(agent_id)
    with StatementCounter(engine) as counter, counter.measure() as m:
        assert await pings.flush() == 20
    assert m.count == 1
    for agent_id in ids:
        assert (await store.get(agent_id)).last_connected_at == clock.now()


async def test_a_ping_never_revives_a_recorded_disconnect(engine: AsyncEngine):
    clock = FakeClock()
    store, [agent_id] = await _agents(engine, clock, 1)
    pings = PingBatcher(store, clock, flush_s=1.0)
    pings.ping(agent_id)
    pings.forget(agent_id)  # the session dropped before the flush
    await store.disconnected(agent_id)
    assert await pings.flush() == 0
    # even a ping written for a moment before the recorded disconnect is refused
    await store.disconnected(agent_id, at=clock.now() + timedelta(seconds=1))
    await store.ping_many([agent_id])
    row = await store.get(agent_id)
    assert compute_agent_status(row, clock.now() + timedelta(seconds=2), 30) is (
        AgentStatus.DISCONNECTED
    )
