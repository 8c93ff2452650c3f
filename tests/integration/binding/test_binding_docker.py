"""The binding acceptance tests that matter for a backend, once more on the docker backend:
a rebuild between turns, the workspace stopped behind the chat's back (and started again
from the chat), the agent killed (``kill -9`` of its process in the container), and the agent
dying mid-turn. Real server, real ``tether agent`` in a container of the workspace image on
the test engine (``docker_host`` fixture), reached over the backend's unix sockets.

The test functions are the local backend's (imported); this module's ``env`` runs them on
Docker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
from binding_env import REPO, BindingEnv, binding_env
from test_binding_e2e import (
    test_e2e2_e2e6_gc3_rebuild_between_turns_is_repaired_silently as test_docker_rebuild,
)
from test_binding_e2e import (
    test_e2e4_e2e8_gc13_gc14_stopped_workspace_is_typed_within_target as test_docker_stopped,
)
from test_binding_e2e import (
    test_e2e5_start_workspace_after_stopped_error_recovers_in_the_same_turn as test_docker_start,
)
from test_binding_failures import (
    test_e2e7_gc4_crashed_agent_same_build_is_agent_unreachable as test_docker_agent_killed,
)
from test_binding_failures import (
    test_e2e9_gc8_agent_dies_mid_turn_then_restart_works as test_docker_agent_dies_mid_turn,
)

from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, script_model
from tether.workspaces.backends.base import AgentLaunch, WorkspaceRef
from tether.workspaces.backends.docker import container_name
from tether.workspaces.template_parse import parse_template, spec_to_json

pytestmark = [pytest.mark.integration, pytest.mark.docker]

EXAMPLE = REPO / "examples" / "templates" / "docker.yaml"

__all__ = [
    "test_docker_agent_dies_mid_turn",
    "test_docker_agent_killed",
    "test_docker_rebuild",
    "test_docker_start",
    "test_docker_stopped",
]


@pytest.fixture
async def env(tmp_path: Path, docker_host: str) -> AsyncIterator[BindingEnv]:
    instance = f"test-{uuid.uuid4().hex[:8]}"  # reconciliation leaves other tests' alone
    async with binding_env(
        tmp_path, backend="docker", docker_host=docker_host, docker_instance=instance
    ) as running:
        backend = running.graph.backends["docker"]
        try:
            yield running
        finally:
            # no container or volume outlives its test
            for ws_id in await asyncio.to_thread(_ids, running.settings.data_dir / "docker"):
                await backend.delete(WorkspaceRef(ws_id, "", "", ""), _quiet)


async def test_docker_restart_removes_the_leftovers_of_unknown_workspaces(
    env: BindingEnv,
) -> None:
    """A container and volume labelled for a workspace the database does not have (deleted
    while the server was down) are removed when the server starts again; the known
    workspace's home stays."""
    ws, _ = await env.create_workspace()
    backend = env.graph.backends["docker"]
    orphan = WorkspaceRef(uuid.uuid4(), "ghost", "gone", "python", build_id=uuid.uuid4())
    await backend.start(orphan, [AgentLaunch(uuid.uuid4(), "main", "stale-token")], _quiet)
    assert {m.workspace_id for m in await backend.managed()} == {ws, orphan.workspace_id}
    await env.restart()
    backend = env.graph.backends["docker"]
    deadline = asyncio.get_running_loop().time() + 30
    while orphan.workspace_id in {m.workspace_id for m in await backend.managed()}:
        assert asyncio.get_running_loop().time() < deadline, await backend.managed()
        await asyncio.sleep(0.1)
    left = {(m.kind, m.workspace_id) for m in await backend.managed()}
    assert ("volume", ws) in left and ("container", ws) in left


async def test_docker_example_template_runs_a_chat_turn_with_its_limits(
    env: BindingEnv, docker_host: str
) -> None:
    """``examples/templates/docker.yaml`` end to end: parameters fill the limits, the startup
    script runs in the container, and a chat turn executes a command there."""
    source = EXAMPLE.read_text()
    template, _ = await env.graph.template_store.push(
        spec=spec_to_json(parse_template(source)), source=source, user_id=env.owner.id
    )
    ws, build = await env.graph.workspaces.create(
        env.owner, template=template, name="boxed", parameters={"memory": "512m", "cpus": "1.5"}
    )
    await env.graph.workspaces.wait_for_build(build.id, timeout_s=30)
    agent = await env.wait_agent_ready(ws.id)
    async with aiodocker.Docker(url=docker_host) as docker:
        info = await (await docker.containers.get(container_name(ws.id))).show()
    assert info["HostConfig"]["Memory"] == 512 << 20
    assert info["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert info["HostConfig"]["PidsLimit"] == 512
    env.start_worker()
    model = script_model([Call("execute", {"command": "python3 hello.py; id -u"}), Say("ok")])
    chat = await env.new_chat("run it", model, workspace_id=ws.id)
    chat = await env.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    assert chat.agent_id == agent.id
    [result] = await env.results(chat.id, "execute")
    uid = str(env.graph.backends["docker"].agent_uid)  # type: ignore[attr-defined]
    assert result["result"]["output"].split() == ["hello", "from", "a", "container", uid]


def _ids(root: Path) -> list[uuid.UUID]:
    return [uuid.UUID(p.name) for p in root.iterdir()] if root.is_dir() else []


async def _quiet(_level: str, _line: str) -> None:
    return None
