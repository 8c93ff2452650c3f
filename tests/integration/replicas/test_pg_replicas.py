"""Several replicas on one PostgreSQL: migrations race safely, build events cross
processes through LISTEN/NOTIFY, and provisioner jobs are claimed exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tether.db.pgbus import PostgresBus
from tether.settings import Settings
from tether.testing.fake_backend import FakeBackend
from tether.wiring import build_graph
from tether.workspaces import events
from tether.workspaces.template_parse import parse_template, spec_to_json

pytestmark = pytest.mark.postgres

TEMPLATE = "name: fake\nbackend: fake\n"


def _settings(tmp: Path, url: str) -> Settings:
    # replicas share the server key (one file both point at); each keeps its own data dir
    key = tmp.parent / "server.key"
    return Settings(data_dir=tmp, db_url=url, run_chatd=False, server_key_file=key)


async def test_two_replicas_share_events_and_claim_each_job_once(tmp_path, pg_db_url):
    backend_a, backend_b = FakeBackend(name="fake"), FakeBackend(name="fake")
    a, b = await asyncio.gather(
        build_graph(_settings(tmp_path / "a", pg_db_url), backends={"fake": backend_a}),
        build_graph(_settings(tmp_path / "b", pg_db_url), backends={"fake": backend_b}),
    )
    try:
        assert isinstance(a.bus, PostgresBus) and isinstance(b.bus, PostgresBus)
        admin = await a.users.create_user("admin", "admin")
        spec = parse_template(TEMPLATE)
        template, _ = await a.template_store.push(
            spec=spec_to_json(spec), source=TEMPLATE, user_id=admin.id
        )
        async with b.bus.subscribe(events.BUILDS) as seen_by_b:
            builds = []
            for i in range(6):
                _, build = await a.workspaces.create(admin, template=template, name=f"w{i}")
                builds.append(build)
            event = await seen_by_b.get(timeout=5)
            assert event is not None and event["type"] == "build"
        # both provisioners race for the six jobs
        ran = await asyncio.gather(
            *(p.run_once() for _ in range(6) for p in (a.provisioner, b.provisioner))
        )
        assert sum(ran) == 6
        started = [c for c in backend_a.calls + backend_b.calls if c.op == "start"]
        assert sorted(str(c.workspace_id) for c in started) == sorted(
            str(bld.workspace_id) for bld in builds
        )
        for bld in builds:
            assert (await a.workspace_store.get_build(bld.id)).status.value == "succeeded"
    finally:
        await asyncio.gather(a.aclose(), b.aclose())
