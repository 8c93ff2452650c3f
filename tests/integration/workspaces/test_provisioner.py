"""The provisioner with the shipped fake backend: cancel of a running build, a backend
failure recorded as the job's error with the build and its log kept."""

from __future__ import annotations

import asyncio

from tether.domain.workspace import JobStatus, Transition
from tether.settings import Settings
from tether.testing.fake_backend import FakeBackend
from tether.wiring import graph_context
from tether.workspaces.template_parse import parse_template, spec_to_json

TEMPLATE = "name: fake\nbackend: fake\n"


async def _graph_with(tmp_path, backend):
    settings = Settings(data_dir=tmp_path, run_chatd=False)
    return graph_context(settings, backends={"fake": backend})


async def _template(graph):
    admin = await graph.users.create_user("admin", "admin")
    spec = parse_template(TEMPLATE)
    template, _ = await graph.template_store.push(
        spec=spec_to_json(spec), source=TEMPLATE, user_id=admin.id
    )
    return admin, template


async def test_cancel_a_running_build(tmp_path):
    started = asyncio.Event()

    async def hang(ws, agents):
        started.set()
        await asyncio.Event().wait()

    async with await _graph_with(tmp_path, FakeBackend(on_start=hang)) as graph:
        admin, template = await _template(graph)
        ws, build = await graph.workspaces.create(admin, template=template, name="w")
        run = asyncio.create_task(graph.provisioner.run_once())
        await asyncio.wait_for(started.wait(), 5)
        canceling = await graph.workspaces.cancel(admin, ws.id)
        assert canceling.status is JobStatus.CANCELING
        assert await asyncio.wait_for(run, 5) is True
        final = await graph.workspace_store.get_build(build.id)
        assert final.status is JobStatus.CANCELED
        logs = [ln.output for ln in await graph.workspace_store.job_logs(build.job_id)]
        assert "build canceled" in logs


async def test_backend_failure_fails_the_job_and_keeps_build_and_log(tmp_path):
    backend = FakeBackend()
    backend.fail_next_start("disk full on the workspace host")
    async with await _graph_with(tmp_path, backend) as graph:
        admin, template = await _template(graph)
        ws, build = await graph.workspaces.create(admin, template=template, name="w")
        assert await graph.provisioner.run_once() is True
        final = await graph.workspace_store.get_build(build.id)
        assert final.status is JobStatus.FAILED
        assert final.job.error == "disk full on the workspace host"
        logs = [ln.output for ln in await graph.workspace_store.job_logs(build.job_id)]
        assert logs[-1] == "disk full on the workspace host"
        view = await graph.workspaces.view(admin, ws.id)
        assert view.state == "failed"
        # a failed start can be retried: a new build, nothing lost
        retry, created = await graph.workspaces.transition(admin, ws.id, Transition.START)
        assert created and retry.build_number == 2
        assert await graph.provisioner.run_once() is True
        assert (await graph.workspace_store.get_build(retry.id)).status is JobStatus.SUCCEEDED
