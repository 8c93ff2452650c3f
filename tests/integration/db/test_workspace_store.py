"""Workspace, build, job and agent stores on both dialects (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import SystemClock
from tether.db.agents import AgentStore, NewAgent
from tether.db.templates import TemplateStore
from tether.db.users import UserStore
from tether.db.workspaces import BuildRequest, WorkspaceStore
from tether.domain.agent import Lifecycle
from tether.domain.workspace import JobStatus, Transition
from tether.errors import Conflict, Unauthorized

SPEC = {"name": "py", "agents": [{"name": "main", "order": 0, "chat": True}]}


async def _setup(engine: AsyncEngine):
    clock = SystemClock()
    users, templates = UserStore(engine, clock), TemplateStore(engine, clock)
    store, agents = WorkspaceStore(engine, clock), AgentStore(engine, clock)
    owner = await users.create_user("alice", "member")
    template, version = await templates.push(spec=SPEC, source="name: py", user_id=owner.id)
    return owner, template, version, store, agents


def _req(ws_id, version, owner, transition=Transition.START):
    return BuildRequest(
        workspace_id=ws_id,
        transition=transition,
        template_version_id=version.id,
        parameters={},
        initiator_id=owner.id,
    )


async def test_template_push_versions(engine: AsyncEngine):
    owner, template, version, *_ = await _setup(engine)
    templates = TemplateStore(engine, SystemClock())
    again, v2 = await templates.push(spec=SPEC, source="v2", user_id=owner.id)
    assert again.id == template.id and v2.version == 2 and version.version == 1
    assert (await templates.get(template.id)).active_version_id == v2.id


async def test_workspace_names_unique_per_owner(engine: AsyncEngine):
    owner, template, _version, store, _ = await _setup(engine)
    await store.create(owner_id=owner.id, template_id=template.id, name="w", ttl_ms=None)
    with pytest.raises(Conflict):
        await store.create(owner_id=owner.id, template_id=template.id, name="w", ttl_ms=None)


async def test_concurrent_starts_produce_exactly_one_build(engine: AsyncEngine):
    owner, template, version, store, _ = await _setup(engine)
    ws, first = await store.create(
        owner_id=owner.id,
        template_id=template.id,
        name="w",
        ttl_ms=None,
        first_build=_req(None, version, owner),
    )
    assert first is not None and first.build_number == 1
    # the first build is still pending: every concurrent start gets it back
    results = await asyncio.gather(
        *(store.create_build(_req(ws.id, version, owner)) for _ in range(6))
    )
    assert {b.id for b, _ in results} == {first.id}
    assert not any(created for _, created in results)
    # a stop while a start is in progress is a conflict
    with pytest.raises(Conflict):
        await store.create_build(_req(ws.id, version, owner, Transition.STOP))
    await store.claim_job(first.initiator_id)
    await store.finish_job(first.job_id)
    results = await asyncio.gather(
        *(store.create_build(_req(ws.id, version, owner, Transition.STOP)) for _ in range(6)),
        return_exceptions=True,
    )
    builds = {r[0].id for r in results if not isinstance(r, BaseException)}
    assert len(builds) == 1
    assert sum(1 for r in results if not isinstance(r, BaseException) and r[1]) == 1
    assert [b.build_number for b in await store.list_builds(ws.id)] == [1, 2]


async def test_job_claim_finish_cancel(engine: AsyncEngine):
    owner, template, version, store, _ = await _setup(engine)
    ws, build = await store.create(
        owner_id=owner.id,
        template_id=template.id,
        name="w",
        ttl_ms=None,
        first_build=_req(None, version, owner),
    )
    assert build is not None and build.status is JobStatus.PENDING
    claimed = await store.claim_job(owner.id)
    assert claimed is not None and claimed.id == build.id and claimed.status is JobStatus.RUNNING
    assert await store.claim_job(owner.id) is None  # nothing else pending
    canceling = await store.cancel_job(build.job_id)
    assert canceling.status is JobStatus.CANCELING
    done = await store.finish_job(build.job_id)
    assert done.status is JobStatus.CANCELED
    with pytest.raises(Conflict):
        await store.finish_job(build.job_id)  # compare-and-set: already finished
    stop, created = await store.create_build(_req(ws.id, version, owner, Transition.STOP))
    assert created
    assert (await store.cancel_job(stop.job_id)).status is JobStatus.CANCELED  # pending → canceled
    with pytest.raises(Conflict):
        await store.cancel_job(stop.job_id)
    start, _ = await store.create_build(_req(ws.id, version, owner))
    await store.claim_job(owner.id)
    failed = await store.finish_job(start.job_id, error="backend exploded")
    assert failed.status is JobStatus.FAILED and failed.error == "backend exploded"
    await store.append_log(start.job_id, stage="start", level="info", output="line 1")
    await store.append_log(start.job_id, stage="start", level="error", output="line 2")
    logs = await store.job_logs(start.job_id)
    assert [ln.output for ln in logs] == ["line 1", "line 2"]
    assert [ln.output for ln in await store.job_logs(start.job_id, after_id=logs[0].id)] == [
        "line 2"
    ]


async def test_agents_new_ids_per_build_and_lifecycle_cas(engine: AsyncEngine):
    owner, template, version, store, agents = await _setup(engine)
    ws, b1 = await store.create(
        owner_id=owner.id,
        template_id=template.id,
        name="w",
        ttl_ms=None,
        first_build=_req(None, version, owner),
    )
    assert b1 is not None
    [(a1, token1)] = await agents.create_for_build(
        build_id=b1.id,
        workspace_id=ws.id,
        agents=[NewAgent("main", 0, True)],
        connection_timeout_s=120,
    )
    assert (await agents.authenticate(token1)).id == a1.id
    with pytest.raises(Unauthorized):
        await agents.authenticate("nope")
    assert [a.id for a in await agents.latest_build_agents(ws.id)] == [a1.id]
    await agents.set_lifecycle(a1.id, Lifecycle.STARTING)
    await agents.set_lifecycle(a1.id, Lifecycle.STARTING)  # re-sent after reconnect: no-op
    await agents.set_lifecycle(a1.id, Lifecycle.READY)
    with pytest.raises(Conflict):
        await agents.set_lifecycle(a1.id, Lifecycle.STARTING)
    connected = await agents.connected(
        a1.id, address="127.0.0.1:1", os="linux", directory="project", version="1"
    )
    assert connected.first_connected_at is not None and connected.dial_address == "127.0.0.1:1"
    await store.claim_job(owner.id)
    await store.finish_job(b1.job_id)
    stop, _ = await store.create_build(_req(ws.id, version, owner, Transition.STOP))
    assert await agents.latest_build_agents(ws.id) == []  # a stop build has no agents
    await store.claim_job(owner.id)
    await store.finish_job(stop.job_id)
    await agents.set_build_off(b1.id)
    off = await agents.get(a1.id)
    assert off.lifecycle_state is Lifecycle.OFF and off.disconnected_at is not None
    b3, _ = await store.create_build(_req(ws.id, version, owner))
    [(a3, _)] = await agents.create_for_build(
        build_id=b3.id,
        workspace_id=ws.id,
        agents=[NewAgent("main", 0, True)],
        connection_timeout_s=120,
    )
    assert a3.id != a1.id  # a rebuild makes new agent ids: that is what makes bindings stale
    assert [a.id for a in await agents.latest_build_agents(ws.id)] == [a3.id]


async def test_expired_workspaces_by_ttl(engine: AsyncEngine):
    owner, template, version, store, _ = await _setup(engine)
    ws, build = await store.create(
        owner_id=owner.id,
        template_id=template.id,
        name="w",
        ttl_ms=1000,
        first_build=_req(None, version, owner),
    )
    assert build is not None
    now = SystemClock().now()
    assert await store.expired(now + timedelta(seconds=5)) == []  # build not finished yet
    await store.claim_job(owner.id)
    await store.finish_job(build.job_id)
    assert await store.expired(now) == []
    assert [w.id for w in await store.expired(now + timedelta(seconds=5))] == [ws.id]
    await store.touch(ws.id)
    assert await store.expired(SystemClock().now()) == []


async def test_wk7_touch_many_bumps_live_workspaces_in_one_call(engine: AsyncEngine):
    """The chat worker's usage bump (WK-7): every live workspace given moves its
    ``last_used_at``; deleted ones, unknown ids and an empty call change nothing."""
    owner, template, _version, store, _ = await _setup(engine)
    made = [
        (await store.create(owner_id=owner.id, template_id=template.id, name=n, ttl_ms=1000))[0]
        for n in ("a", "b", "gone")
    ]
    await store.mark_deleted(made[2].id)
    await asyncio.sleep(0.01)  # the clock must move for the bump to be visible
    await store.touch_many([])
    await store.touch_many([m.id for m in made] + [made[0].id, uuid.UUID(int=1)])
    after = {m.id: (await store.get(m.id)).last_used_at for m in made}
    assert after[made[0].id] > made[0].last_used_at
    assert after[made[1].id] > made[1].last_used_at
    assert after[made[2].id] == made[2].last_used_at


async def test_start_on_a_running_workspace_is_a_no_op(engine: AsyncEngine):
    """However fast the first start finishes, a later start of a running workspace returns
    that build instead of making another (restarting is an explicit rebuild)."""
    owner, template, version, store, _ = await _setup(engine)
    ws, first = await store.create(
        owner_id=owner.id,
        template_id=template.id,
        name="w",
        ttl_ms=None,
        first_build=_req(None, version, owner),
    )
    assert first is not None
    await store.claim_job(owner.id)
    await store.finish_job(first.job_id)
    again, created = await store.create_build(_req(ws.id, version, owner))
    assert again.id == first.id and not created
    stop, created = await store.create_build(_req(ws.id, version, owner, Transition.STOP))
    assert created and stop.build_number == 2
