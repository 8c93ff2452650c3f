"""The docker backend on a real engine (``docker_host`` fixture), beyond the shared contract:
processes gone after stop, home kept across stop/start/rebuild and removed by delete, the
template's limits/env/network (filled from parameters) applied by the engine, labels that let
a restarted server find and clean up, credentials never in the container's environment, and
engine errors shown verbatim.

The agent is ``tests/fixtures/sleepy_agent.py`` (double-forks a daemon, writes a report to
``$HOME``), mounted into the container.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

import tether
from tether.errors import BackendError
from tether.workspaces.backends.base import AgentLaunch, WorkspaceRef
from tether.workspaces.backends.docker import (
    HOME,
    LABEL_AGENTS,
    LABEL_WORKSPACE,
    DockerBackend,
    container_name,
    volume_name,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def server_packages() -> tuple[Path, Path]:
    """The server's ``tether`` package and site-packages (mounted into every container)."""
    return (
        Path(tether.__file__).resolve().parent,
        Path(sysconfig.get_paths()["purelib"]).resolve(),
    )


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def __call__(self, level: str, line: str) -> None:
        self.lines.append((level, line))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


@pytest.fixture
async def backend(docker_host: str, tmp_path: Path) -> AsyncIterator[DockerBackend]:
    run_root = Path(tempfile.mkdtemp(prefix="td", dir="/tmp"))  # short: socket paths
    b = DockerBackend(
        tmp_path / "docker",
        "http://127.0.0.1:9",
        docker_host=docker_host,
        agent_args=["/opt/fixtures/sleepy_agent.py"],
        extra_binds=[f"{FIXTURES}:/opt/fixtures:ro"],
        stop_grace_s=1.0,
        run_root=run_root,
    )
    try:
        yield b
    finally:
        for name in await asyncio.to_thread(os.listdir, run_root):
            await b.delete(WorkspaceRef(uuid.UUID(name), "", "", ""), Log())
        shutil.rmtree(run_root, ignore_errors=True)


@pytest.fixture
async def engine(docker_host: str) -> AsyncIterator[aiodocker.Docker]:
    docker = aiodocker.Docker(url=docker_host)
    try:
        yield docker
    finally:
        await docker.close()


def ws_ref(**kw: Any) -> WorkspaceRef:
    return WorkspaceRef(uuid.uuid4(), "alice", "dev", "python", build_id=uuid.uuid4(), **kw)


def launch(name: str = "main") -> AgentLaunch:
    return AgentLaunch(uuid.uuid4(), name, f"token-{uuid.uuid4()}", dial_secret="dial-secret-x")


async def home_file(
    engine: aiodocker.Docker, ws: WorkspaceRef, name: str, timeout: float = 10.0
) -> dict[str, Any]:
    """A JSON file from the workspace's home volume (read through its container)."""
    container = await engine.containers.get(container_name(ws.workspace_id))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            archive = await container.get_archive(f"{HOME}/{name}")
        except aiodocker.DockerError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        member = archive.extractfile(name)
        assert member is not None
        data: dict[str, Any] = json.loads(member.read())
        return data


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def test_stop_ends_every_process_of_the_container(
    backend: DockerBackend, engine: aiodocker.Docker
) -> None:
    ws, agent, started = ws_ref(), launch(), Log()
    await backend.start(ws, [agent], started)
    # the build log shows the engine's steps
    steps = started.text()
    for step in ("creating volume", "creating container", "starting container", "started agent"):
        assert step in steps, steps
    await home_file(engine, ws, f"sleepy-{agent.agent_id}.json")  # the daemon has forked
    container = await engine.containers.get(container_name(ws.workspace_id))
    top = await container.top(ps_args="-eo pid,args")
    pids = [int(row[0]) for row in top["Processes"]]
    assert len(pids) >= 4  # init, launcher, agent, its double-forked daemon
    runtime = await backend.inspect(ws)
    assert runtime.agent_pids[agent.agent_id] in pids
    assert all(alive(p) for p in pids)
    log = Log()
    await backend.stop(ws, log)
    assert "SIGTERM" in log.text()
    assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]
    assert not (await backend.inspect(ws)).running


async def test_home_survives_stop_start_and_rebuild_and_delete_removes_it(
    backend: DockerBackend, engine: aiodocker.Docker
) -> None:
    ws = ws_ref()
    first, second, third = launch(), launch(), launch()
    await backend.start(ws, [first], Log())
    await home_file(engine, ws, f"sleepy-{first.agent_id}.json")
    await backend.stop(ws, Log())
    await backend.start(ws, [second], Log())  # start after stop
    await home_file(engine, ws, f"sleepy-{second.agent_id}.json")
    log = Log()
    await backend.start(ws, [third], log)  # rebuild: a new container, the same volume
    assert "kept" in log.text()
    report = await home_file(engine, ws, f"sleepy-{third.agent_id}.json")
    assert report["env"]["HOME"] == HOME
    for earlier in (first, second):
        await home_file(engine, ws, f"sleepy-{earlier.agent_id}.json", timeout=0)
    # one container per workspace, labelled with the current build's agents only
    containers = await engine.containers.list(
        all=True, filters={"label": [f"{LABEL_WORKSPACE}={ws.workspace_id}"]}
    )
    assert len(containers) == 1
    info = await containers[0].show()
    assert info["Config"]["Labels"][LABEL_AGENTS] == str(third.agent_id)
    assert set((await backend.inspect(ws)).agent_pids) == {third.agent_id}
    await backend.delete(ws, Log())
    with pytest.raises(aiodocker.DockerError) as gone:
        await engine.volumes.get(volume_name(ws.workspace_id))
    assert gone.value.status == 404
    assert (await backend.inspect(ws)).home is None


async def test_template_limits_env_and_network_filled_from_parameters(
    backend: DockerBackend, engine: aiodocker.Docker
) -> None:
    ws = ws_ref(
        parameters={"cpus": "0.5", "mem": "256m", "greeting": "hello"},
        backend_config={
            "cpus": "{{ cpus }}",
            "memory": "{{mem}}",
            "pids": "64",
            "env": {"GREETING": "{{ greeting }} world"},
            "network_mode": "none",
        },
    )
    log = Log()
    await backend.start(ws, [launch()], log)
    assert "cpus=0.5" in log.text() and "pids=64" in log.text()
    info = await (await engine.containers.get(container_name(ws.workspace_id))).show()
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 256 << 20
    assert host["PidsLimit"] == 64
    assert host["NetworkMode"] == "none"
    assert "GREETING=hello world" in info["Config"]["Env"]
    # enforced by the kernel, not just recorded: the container's cgroup (a local engine,
    # cgroup v1 or v2)
    found = await asyncio.to_thread(_cgroup_limits, info["Id"])
    assert found, "no cgroup of the container found"
    assert found.get("pids") == "64", found
    assert found.get("memory") == str(256 << 20), found


def _cgroup_limits(cid: str) -> dict[str, str]:
    out = {}
    for kind, path in (
        ("pids", f"/sys/fs/cgroup/pids/docker/{cid}/pids.max"),
        ("memory", f"/sys/fs/cgroup/memory/docker/{cid}/memory.limit_in_bytes"),
        ("pids", f"/sys/fs/cgroup/docker/{cid}/pids.max"),
        ("memory", f"/sys/fs/cgroup/docker/{cid}/memory.max"),
    ):
        if Path(path).exists():
            out[kind] = Path(path).read_text().strip()
    return out


async def test_bad_limit_is_a_typed_error_before_the_engine_is_asked(
    backend: DockerBackend,
) -> None:
    ws = ws_ref(parameters={"mem": "lots"}, backend_config={"memory": "{{ mem }}"})
    log = Log()
    with pytest.raises(BackendError) as info:
        await backend.start(ws, [launch()], log)
    assert "docker.memory" in info.value.message and "'lots'" in info.value.message
    assert ("error", info.value.message) in log.lines


async def test_labels_let_a_restarted_server_find_and_clean_up(
    backend: DockerBackend, engine: aiodocker.Docker
) -> None:
    kept, orphan = ws_ref(), ws_ref()
    await backend.start(kept, [launch()], Log())
    await backend.start(orphan, [launch()], Log())
    # a new backend object: nothing in memory, only what the engine's labels say
    fresh = DockerBackend(
        backend.root, backend.server_url, docker_host=backend.docker_host, run_root=backend.run_root
    )
    managed = {(m.kind, m.workspace_id): m for m in await fresh.managed()}
    for ws in (kept, orphan):
        container = managed[("container", ws.workspace_id)]
        assert container.build_id == str(ws.build_id) and container.running
        assert ("volume", ws.workspace_id) in managed
    removed = await fresh.remove_unknown(
        {kept.workspace_id} | _others(managed, kept, orphan), Log()
    )
    assert removed == [orphan.workspace_id]
    left = {(m.kind, m.workspace_id) for m in await fresh.managed()}
    assert ("container", orphan.workspace_id) not in left
    assert ("volume", orphan.workspace_id) not in left
    assert ("container", kept.workspace_id) in left
    assert (await backend.inspect(kept)).running


def _others(managed: dict[Any, Any], *mine: WorkspaceRef) -> set[uuid.UUID]:
    # workspaces of other tests on the same engine are not this test's to remove
    ours = {w.workspace_id for w in mine}
    return {wid for _, wid in managed if wid not in ours}


async def test_credentials_are_a_file_the_agent_deletes_never_the_environment(
    backend: DockerBackend, engine: aiodocker.Docker
) -> None:
    ws, agent = ws_ref(), launch()
    await backend.start(ws, [agent], Log())
    report = await home_file(engine, ws, f"sleepy-{agent.agent_id}.json")
    assert report["token"] == agent.token  # the agent got its token
    assert report["uid"] == backend.agent_uid != 0  # never root in the container
    info = await (await engine.containers.get(container_name(ws.workspace_id))).show()
    inspected = json.dumps(info)
    assert agent.token not in inspected and agent.dial_secret not in inspected
    run = backend.run_dir(ws.workspace_id)
    assert not (run / f"{agent.agent_id}.cred").exists()  # read and deleted
    assert run.stat().st_mode & 0o777 == 0o700
    assert backend.dial_address(ws.workspace_id, agent.agent_id) == (
        f"unix:{run / f'{agent.agent_id}.sock'}"
    )


async def test_missing_image_fails_the_build_with_the_engines_words(
    backend: DockerBackend,
) -> None:
    ws, log = ws_ref(backend_config={"image": "no-such-image:1"}), Log()
    with pytest.raises(BackendError) as info:
        await backend.start(ws, [launch()], log)
    assert "No such image: no-such-image:1" in info.value.message
    assert "tether images build" in info.value.message
    assert any(level == "error" and "No such image" in line for level, line in log.lines)
    assert not (await backend.inspect(ws)).running


async def test_unreachable_engine_is_a_backend_error(tmp_path: Path) -> None:
    b = DockerBackend(tmp_path, "http://127.0.0.1:9", docker_host=f"unix://{tmp_path}/none.sock")
    with pytest.raises(BackendError) as info:
        await b.inspect(ws_ref())
    assert "unreachable" in info.value.message


async def test_image_without_the_python_is_refused_with_the_reason(
    backend: DockerBackend,
) -> None:
    ws, log = ws_ref(), Log()
    other = DockerBackend(
        backend.root,
        backend.server_url,
        docker_host=backend.docker_host,
        run_root=backend.run_root,
        python="/no/such/python3",
    )
    with pytest.raises(BackendError) as err:
        await other.start(ws, [launch()], log)
    assert "/no/such/python3 not found in the image" in err.value.message
    assert not (await other.inspect(ws)).running


async def test_attacks_from_inside_a_container_fail(
    backend: DockerBackend, engine: aiodocker.Docker, tmp_path: Path
) -> None:
    """Workspace B's "agent" (``tests/fixtures/sandbox_attack.py``) tries to reach workspace
    A (its agent's socket, runtime dir, pid, token), the server's state, and to write into the
    server's own packages mounted into every container (a ``.pth`` there would run in the
    server). Each attempt must fail."""
    victim, victim_agent = ws_ref(), launch()
    await backend.start(victim, [victim_agent], Log())
    await home_file(engine, victim, f"sleepy-{victim_agent.agent_id}.json")
    victim_pid = (await backend.inspect(victim)).agent_pids[victim_agent.agent_id]
    a_run = backend.run_dir(victim.workspace_id)
    package, site = server_packages()
    targets = {
        "read": [str(a_run / "server.sock"), str(backend.root / str(victim.workspace_id))],
        "list": [str(a_run), str(backend.run_root), str(backend.root), "/var/lib/docker"],
        "kill": [victim_pid],
        "connect": [
            str(a_run / f"{victim_agent.agent_id}.sock"),
            str(a_run / "server.sock"),
            "/var/run/docker.sock",
        ],
        "write": [
            "/opt/tether/lib/tether/pwned.py",
            "/opt/tether/site/pwned.pth",
            f"{package}/pwned.py",
            f"{site}/pwned.pth",
        ],
        "needle": victim_agent.token,
    }
    spec = tmp_path / "attack"
    spec.mkdir()
    (spec / "targets.json").write_text(json.dumps(targets))
    attacker = DockerBackend(
        backend.root,
        backend.server_url,
        docker_host=backend.docker_host,
        agent_args=["/opt/fixtures/sandbox_attack.py", "/opt/attack/targets.json"],
        extra_binds=[f"{FIXTURES}:/opt/fixtures:ro", f"{spec}:/opt/attack:ro"],
        stop_grace_s=1.0,
        run_root=backend.run_root,
    )
    b = ws_ref()
    await attacker.start(b, [launch()], Log())
    report = await home_file(engine, b, "attack.json")
    for kind in ("read", "list", "kill", "connect", "write"):
        for target, outcome in report[kind].items():
            assert outcome.startswith("failed"), (kind, target, outcome)
    assert report["proc"]["needle_found_in"] == []
    assert (await backend.inspect(victim)).agent_pids[victim_agent.agent_id] == victim_pid
    assert not (package / "pwned.py").exists() and not (site / "pwned.pth").exists()
    await attacker.delete(b, Log())


SYSTEM_PYTHON = "/usr/bin/python3"  # one another user can run (the venv may be private)


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
    reason="needs root (to act as another host user) and /usr/bin/python3",
)
async def test_another_host_user_cannot_reach_the_runtime_dir(backend: DockerBackend) -> None:
    """The host side of the transport: a local user other than the agents' uid cannot list
    the runtime dir, connect to an agent's socket or read a credentials file."""
    ws, agent = ws_ref(), launch()
    await backend.start(ws, [agent], Log())
    run = backend.run_dir(ws.workspace_id)
    probe = (
        "import os, socket, sys\n"
        "out = []\n"
        "for name, fn in (\n"
        "    ('list', lambda: os.listdir(sys.argv[1])),\n"
        "    ('socket', lambda: socket.socket(socket.AF_UNIX).connect(sys.argv[2])),\n"
        "    ('relay', lambda: socket.socket(socket.AF_UNIX).connect(sys.argv[3])),\n"
        "):\n"
        "    try:\n"
        "        fn(); out.append(name + ' SUCCEEDED')\n"
        "    except OSError as exc:\n"
        "        out.append(name + ' ' + type(exc).__name__)\n"
        "print(' '.join(out))\n"
    )
    nobody = 65534
    assert backend.agent_uid != nobody
    done = await asyncio.to_thread(
        subprocess.run,
        [
            SYSTEM_PYTHON,
            "-S",
            "-c",
            probe,
            str(run),
            str(run / f"{agent.agent_id}.sock"),
            str(run / "server.sock"),
        ],
        user=nobody,
        group=nobody,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.split() == [
        "list",
        "PermissionError",
        "socket",
        "PermissionError",
        "relay",
        "PermissionError",
    ], done.stdout + done.stderr
