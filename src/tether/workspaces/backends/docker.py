"""The docker backend: each workspace is a container on a Docker engine (Engine API through
``aiodocker``; ``docker_host`` / ``DOCKER_HOST`` selects the engine).

Per workspace:

- a named volume ``tether-home-<workspace_id>`` mounted as HOME (``/home/workspace``); it
  survives stop, start and rebuild and is removed by delete;
- one container per start build, ``tether-<workspace_id>``, from the template's image
  (``docker:`` section, see :mod:`.dockerconfig`) with its limits (CPUs, memory, pids), env and
  network mode. Start removes the previous build's container and creates a new one, so each
  build's agents (new ids and tokens) run in a fresh container; stop stops it (SIGTERM, then
  SIGKILL after ``stop_grace_s``, done by the engine); delete removes container and volume;
- a private runtime dir on this host, ``run_root/<workspace_id>`` (0700), bind-mounted at
  ``/run/tether``. Each agent listens on ``<agent_id>.sock`` there and the server dials that
  path (:meth:`DockerBackend.dial_address`, decided here, never claimed by an agent); the agent
  reaches the server through ``server.sock``, a relay (:mod:`.relay`) this backend starts on
  the host. No routable network between server and container is needed, so the container can
  run with ``network_mode: none`` (the default) on an engine with ``--bridge=none``.

The ``tether agent`` is not in the image: the server's ``tether`` package and its
site-packages are mounted read-only (``/opt/tether``) and run by the image's ``python3``
(any image with a Python of the server's minor version works; ``tether images build`` makes
one). Agent credentials are not in the container's environment (``docker inspect`` shows
it): each agent gets ``/run/tether/<agent_id>.cred`` (0600), which it reads and deletes
(``TETHER_AGENT_CREDENTIALS_FILE``).

Labels (``tether.workspace``, ``tether.build``, ``tether.owner``, ``tether.agents``,
``tether.managed=<instance>``) tie containers and volumes to their workspace and build;
:meth:`DockerBackend.managed` lists this instance's, and :meth:`DockerBackend.remove_unknown`
(run by the provisioner at start-up, :mod:`tether.workspaces.reconcile`) removes those of
workspaces the database no longer has.

Limitation: the runtime dir is a bind mount, so the engine must share this host's filesystem
(a local engine, or a remote one with the same path shared). See docs/docker.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sysconfig
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

import tether
from tether.clock import Clock, SystemClock
from tether.errors import BackendError, InvalidInput
from tether.settings import Settings
from tether.workspaces.backends import procs
from tether.workspaces.backends import sandbox_launch as launch
from tether.workspaces.backends.base import AgentLaunch, LogSink, WorkspaceRef, WorkspaceRuntime
from tether.workspaces.backends.dockerconfig import DockerConfig, resolve
from tether.workspaces.backends.dockerscript import AGENT_MARK, RUN, container_script

LABEL = "tether.managed"
LABEL_WORKSPACE = "tether.workspace"
LABEL_BUILD = "tether.build"
LABEL_OWNER = "tether.owner"
LABEL_AGENTS = "tether.agents"
HOME = "/home/workspace"
OPT = "/opt/tether"
RELAY_SOCKET = "server.sock"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"  # the engine's own default
# The agents' uid (and gid) in containers when the server runs as root: one no host account
# should use, since the runtime dir on the host (sockets, credentials files) is theirs.
AGENT_UID = 65532
_POLL_S = 0.1


def default_run_root() -> Path:
    """Short, per server uid: unix socket paths are limited to 107 bytes."""
    return Path(f"/tmp/tether-docker-{os.geteuid()}")


def container_name(workspace_id: uuid.UUID) -> str:
    return f"tether-{workspace_id}"


def volume_name(workspace_id: uuid.UUID) -> str:
    return f"tether-home-{workspace_id}"


def docker_backend(settings: Settings) -> DockerBackend:
    """The docker backend as the server configures it (no engine contact until used)."""
    return DockerBackend(
        settings.data_dir / "docker",
        settings.server_url(),
        docker_host=settings.docker_host,
        default_image=settings.docker_image,
        python="python3",
        stop_grace_s=settings.agent_stop_grace_s,
        request_timeout_s=settings.docker_request_timeout_s,
        ready_timeout_s=settings.docker_ready_timeout_s,
        instance=settings.docker_instance,
        agent_uid=settings.docker_agent_uid,
    )


@dataclass(frozen=True)
class Managed:
    """A container or volume carrying this backend's labels."""

    kind: str  # "container" | "volume"
    name: str
    workspace_id: uuid.UUID
    build_id: str
    running: bool


class DockerBackend:
    """Runs workspaces as containers on a Docker engine."""

    name = "docker"

    def __init__(
        self,
        root: Path,
        server_url: str,
        *,
        docker_host: str | None = None,
        default_image: str = "tether-workspace:bookworm",
        python: str = "python3",
        agent_args: list[str] | None = None,
        stop_grace_s: float = 3.0,
        request_timeout_s: float = 60.0,
        ready_timeout_s: float = 30.0,
        extra_binds: list[str] | None = None,
        run_root: Path | None = None,
        clock: Clock | None = None,
        instance: str = "default",
        agent_uid: int | None = None,
    ) -> None:
        self.root = Path(root)
        # tether.managed=<instance>: what this server may reconcile on a shared engine
        self.instance = instance
        # Agents never run as root in the container: as the server's uid (so the server can
        # dial their 0600 sockets), or agent_uid (AGENT_UID) when the server itself is root.
        uid = os.geteuid()
        self.agent_uid = agent_uid if agent_uid is not None else (uid if uid else AGENT_UID)
        self.server_url = server_url
        self.docker_host = docker_host or DEFAULT_DOCKER_HOST
        self.default_image = default_image
        self.python = python
        self.agent_args = list(agent_args or ["-m", "tether.agent"])
        self.stop_grace_s = stop_grace_s
        self.request_timeout_s = request_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.extra_binds = list(extra_binds or [])
        self.run_root = run_root or default_run_root()
        self._clock = clock or SystemClock()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

    # -- addresses and paths -------------------------------------------------------------

    def dial_address(self, workspace_id: uuid.UUID, agent_id: uuid.UUID) -> str:
        """Where the server reaches this agent: its socket in the workspace's runtime dir."""
        return f"unix:{self.run_dir(workspace_id) / f'{agent_id}.sock'}"

    def run_dir(self, workspace_id: uuid.UUID) -> Path:
        return self.run_root / str(workspace_id)

    def state_dir(self, workspace_id: uuid.UUID) -> Path:
        return self.root / str(workspace_id)

    def _lock(self, workspace_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(workspace_id, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _engine(self) -> AsyncIterator[aiodocker.Docker]:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        try:
            docker = aiodocker.Docker(url=self.docker_host, timeout=timeout)
        except (ValueError, OSError) as exc:
            raise BackendError(f"docker engine: {exc}") from exc
        try:
            yield docker
        except aiodocker.DockerError as exc:
            raise BackendError(f"docker engine: {exc.message}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendError(f"docker engine unreachable ({self.docker_host}): {exc}") from exc
        except TimeoutError as exc:
            raise BackendError(
                f"docker engine did not answer within {self.request_timeout_s:g}s"
            ) from exc
        finally:
            await docker.close()

    # -- the backend seam ----------------------------------------------------------------

    async def start(self, ws: WorkspaceRef, agents: list[AgentLaunch], log: LogSink) -> None:
        async with self._lock(ws.workspace_id):
            try:
                config = resolve(ws.backend_config, ws.parameters, self.default_image)
            except InvalidInput as exc:
                await log("error", exc.message)
                raise BackendError(exc.message) from exc
            try:
                async with self._engine() as docker:
                    await self._remove_containers(docker, ws, log)
                    await self._stop_relay(ws)
                    await asyncio.to_thread(self._prepare, ws, agents)
                    await self._ensure_volume(docker, ws, log)
                    await asyncio.to_thread(self._start_relay, ws)
                    await log("info", "agent sessions go through a relay socket (/run/tether)")
                    container = await self._create(docker, ws, agents, config, log)
                    await log(
                        "info", f"docker: starting container {container_name(ws.workspace_id)}"
                    )
                    await container.start()
                    await self._wait_agents(docker, container, agents, log)
            except BackendError as exc:
                await log("error", exc.message)
                with contextlib.suppress(BackendError):
                    await self._stop(ws, log, quiet=True)  # no half-started workspace
                raise

    async def stop(self, ws: WorkspaceRef, log: LogSink) -> None:
        async with self._lock(ws.workspace_id):
            await self._stop(ws, log, quiet=False)

    async def delete(self, ws: WorkspaceRef, log: LogSink) -> None:
        async with self._lock(ws.workspace_id):
            async with self._engine() as docker:
                await self._remove_containers(docker, ws, log)
                await self._stop_relay(ws)
                volume = volume_name(ws.workspace_id)
                try:
                    await docker.volumes.get(volume)
                except aiodocker.DockerError as exc:
                    if exc.status != 404:
                        raise
                else:
                    await log("info", f"docker: removing volume {volume}")
                    await aiodocker.volumes.DockerVolume(docker, volume).delete()
            await asyncio.to_thread(shutil.rmtree, self.run_dir(ws.workspace_id), True)
            await asyncio.to_thread(shutil.rmtree, self.state_dir(ws.workspace_id), True)

    async def inspect(self, ws: WorkspaceRef) -> WorkspaceRuntime:
        async with self._engine() as docker:
            pids: dict[uuid.UUID, int] = {}
            for container in await self._containers(docker, ws.workspace_id):
                info = await container.show()
                if info["State"].get("Running"):
                    pids.update(await self._agent_pids(container))
            home: str | None = volume_name(ws.workspace_id)
            try:
                await docker.volumes.get(volume_name(ws.workspace_id))
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise
                home = None
        return WorkspaceRuntime(running=bool(pids), agent_pids=pids, home=home)

    # -- reconcile and clean up (after a server restart) -------------------------------

    async def managed(self) -> list[Managed]:
        """Every container and volume on the engine that carries this backend's labels."""
        out: list[Managed] = []
        async with self._engine() as docker:
            mine = {"label": [f"{LABEL}={self.instance}"]}
            for c in await docker.containers.list(all=True, filters=mine):
                labels = c._container.get("Labels") or {}
                out.append(
                    Managed(
                        "container",
                        c._container.get("Names", [c.id])[0].lstrip("/"),
                        uuid.UUID(labels[LABEL_WORKSPACE]),
                        labels.get(LABEL_BUILD, ""),
                        c._container.get("State") == "running",
                    )
                )
            volumes = await docker.volumes.list(filters=mine)
            for v in volumes.get("Volumes") or []:
                labels = v.get("Labels") or {}
                out.append(
                    Managed(
                        "volume",
                        v["Name"],
                        uuid.UUID(labels[LABEL_WORKSPACE]),
                        labels.get(LABEL_BUILD, ""),
                        False,
                    )
                )
        return out

    async def remove_unknown(
        self, known: set[uuid.UUID] | Callable[[], Awaitable[set[uuid.UUID]]], log: LogSink
    ) -> list[uuid.UUID]:
        """Delete the containers and volumes of workspaces not in ``known`` (deleted while
        the server was down, or never recorded); returns their ids. ``known`` may be a
        callable: it is asked *after* the engine was listed, so a workspace created
        meanwhile (its row exists before its container) is never taken for unknown."""
        found = {m.workspace_id for m in await self.managed()}
        keep = known if isinstance(known, set) else await known()
        gone = sorted(found - keep)
        for workspace_id in gone:
            await self.delete(WorkspaceRef(workspace_id, "", "", ""), log)
        return gone

    # -- starting ------------------------------------------------------------------------

    def _prepare(self, ws: WorkspaceRef, agents: list[AgentLaunch]) -> None:
        launch.private_root(self.run_root)
        run = self.run_dir(ws.workspace_id)
        run.mkdir(mode=0o700, exist_ok=True)
        for stale in run.glob("*.cred"):
            stale.unlink(missing_ok=True)
        self.state_dir(ws.workspace_id).mkdir(parents=True, exist_ok=True)
        self._own(run)
        for agent in agents:
            path = run / f"{agent.agent_id}.cred"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{agent.token}\n{agent.dial_secret}")
            self._own(path)

    def _own(self, path: Path) -> None:
        """Hand a runtime path to the agents' uid (a root server; otherwise it is ours)."""
        if os.geteuid() == 0 and path.lstat().st_uid != self.agent_uid:
            os.lchown(path, self.agent_uid, self.agent_uid)

    def _start_relay(self, ws: WorkspaceRef) -> None:
        sock = self.run_dir(ws.workspace_id) / RELAY_SOCKET
        wdir = self.state_dir(ws.workspace_id)
        launch.start_relay(self.server_url, wdir, sock, ws.workspace_id, self.ready_timeout_s)

    async def _stop_relay(self, ws: WorkspaceRef) -> None:
        """The relay is a host process carrying the workspace marker (the container's
        processes are gone by now, so the marker finds only the relay)."""
        found = await asyncio.to_thread(procs.workspace_processes, ws.workspace_id, [])
        for proc in found:
            procs.send(proc, signal.SIGKILL)

    async def _ensure_volume(self, docker: aiodocker.Docker, ws: WorkspaceRef, log: LogSink):
        name = volume_name(ws.workspace_id)
        try:
            await docker.volumes.get(name)
            await log("info", f"docker: home volume {name} kept")
            return
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise
        await log("info", f"docker: creating volume {name}")
        await docker.volumes.create({"Name": name, "Labels": self._labels(ws, [])})

    def _labels(self, ws: WorkspaceRef, agents: list[AgentLaunch]) -> dict[str, str]:
        labels = {
            LABEL: self.instance,
            LABEL_WORKSPACE: str(ws.workspace_id),
            LABEL_BUILD: str(ws.build_id or ""),
            LABEL_OWNER: ws.owner_name,
        }
        if agents:
            labels[LABEL_AGENTS] = ",".join(str(a.agent_id) for a in agents)
        return labels

    def _env(self, ws: WorkspaceRef, config: DockerConfig) -> list[str]:
        env = dict(config.env)
        env.update(
            HOME=HOME,
            USER=ws.owner_name or "workspace",
            PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            PYTHONPATH=f"{OPT}/lib:{OPT}/site",
            TETHER_AGENT_URL=self.server_url,
            TETHER_AGENT_SERVER_SOCKET=f"{RUN}/{RELAY_SOCKET}",
            TETHER_WORKSPACE_NAME=ws.name,
            TETHER_WORKSPACE_OWNER=ws.owner_name,
            TETHER_TEMPLATE_NAME=ws.template_name,
            TETHER_WORKSPACE_ID=str(ws.workspace_id),
        )
        env.update({f"TETHER_PARAM_{k.upper()}": v for k, v in ws.parameters.items()})
        return [f"{k}={v}" for k, v in env.items()]

    def _binds(self, ws: WorkspaceRef) -> list[str]:
        package = Path(tether.__file__).resolve().parent
        site = Path(sysconfig.get_paths()["purelib"]).resolve()
        return [
            f"{volume_name(ws.workspace_id)}:{HOME}",
            f"{self.run_dir(ws.workspace_id)}:{RUN}",
            f"{package}:{OPT}/lib/tether:ro",
            f"{site}:{OPT}/site:ro",
            *self.extra_binds,
        ]

    async def _create(
        self,
        docker: aiodocker.Docker,
        ws: WorkspaceRef,
        agents: list[AgentLaunch],
        config: DockerConfig,
        log: LogSink,
    ) -> DockerContainer:
        name = container_name(ws.workspace_id)
        host: dict[str, Any] = {
            "Binds": self._binds(ws),
            "NetworkMode": config.network_mode,
            "Init": True,  # an init reaps orphans; stop takes down every process anyway
        }
        if config.nano_cpus is not None:
            host["NanoCpus"] = config.nano_cpus
        if config.memory_bytes is not None:
            host["Memory"] = config.memory_bytes
            host["MemorySwap"] = config.memory_bytes
        if config.pids_limit is not None:
            host["PidsLimit"] = config.pids_limit
        body: dict[str, Any] = {
            "Image": config.image,
            "Cmd": [
                "/bin/sh",
                "-c",
                container_script(
                    agents,
                    python=self.python,
                    agent_args=self.agent_args,
                    agent_uid=self.agent_uid,
                ),
            ],
            "Env": self._env(ws, config),
            "WorkingDir": HOME,
            "Labels": self._labels(ws, agents),
            "HostConfig": host,
            "StopTimeout": max(1, round(self.stop_grace_s)),
        }
        limits = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("cpus", config.nano_cpus and config.nano_cpus / 1e9),
                ("memory", config.memory_bytes),
                ("pids", config.pids_limit),
            )
            if v
        )
        await log(
            "info",
            f"docker: creating container {name} from image {config.image} "
            f"(network {config.network_mode}{', ' + limits if limits else ''})",
        )
        try:
            return await docker.containers.create(body, name=name)
        except aiodocker.DockerError as exc:
            if exc.status == 404 and "image" in exc.message.lower():
                raise BackendError(
                    f"docker engine: {exc.message} (build the base image with "
                    "`tether images build`, or name an image the engine has)"
                ) from exc
            raise

    async def _wait_agents(
        self,
        docker: aiodocker.Docker,
        container: DockerContainer,
        agents: list[AgentLaunch],
        log: LogSink,
    ) -> None:
        """Return once every agent process runs in the container; a container that exits
        first fails the build with its output."""
        want = {a.agent_id for a in agents}
        deadline = self._clock.monotonic() + self.ready_timeout_s
        while True:
            info = await container.show()
            if not info["State"].get("Running"):
                out = await self._logs(container)
                code = info["State"].get("ExitCode")
                raise BackendError(
                    f"the workspace container exited at once (exit code {code}): {out}"
                )
            seen = await self._agent_pids(container)
            if want <= set(seen):
                for agent in agents:
                    await log(
                        "info",
                        f"started agent {agent.name} (pid {seen[agent.agent_id]} on the engine)",
                    )
                return
            if self._clock.monotonic() >= deadline:
                out = await self._logs(container)
                raise BackendError(
                    f"agents did not start within {self.ready_timeout_s:g}s: {out or 'no output'}"
                )
            await self._clock.sleep(_POLL_S)

    async def _logs(self, container: DockerContainer) -> str:
        with contextlib.suppress(aiodocker.DockerError):
            lines = await container.log(stdout=True, stderr=True, tail=20)
            return " | ".join(line.rstrip() for line in lines if line.strip())[-2000:]
        return ""

    async def _agent_pids(self, container: DockerContainer) -> dict[uuid.UUID, int]:
        """The engine-host pids of the agent processes (``python3 -X tether_agent=<id>``)."""
        try:
            top = await container.top(ps_args="-eo pid,args")
        except aiodocker.DockerError as exc:
            if exc.status in (404, 409, 500):  # gone or not running
                return {}
            raise
        titles = top.get("Titles") or []
        pid_col = titles.index("PID") if "PID" in titles else 0
        out: dict[uuid.UUID, int] = {}
        for row in top.get("Processes") or []:
            line = " ".join(row)
            marker = f"{AGENT_MARK}="
            if marker not in line:
                continue
            raw = line.split(marker, 1)[1].split()[0]
            with contextlib.suppress(ValueError):
                out[uuid.UUID(raw)] = int(row[pid_col])
        return out

    # -- stopping ------------------------------------------------------------------------

    async def _containers(
        self, docker: aiodocker.Docker, workspace_id: uuid.UUID
    ) -> list[DockerContainer]:
        return await docker.containers.list(
            all=True, filters={"label": [f"{LABEL_WORKSPACE}={workspace_id}"]}
        )

    async def _stop(self, ws: WorkspaceRef, log: LogSink, *, quiet: bool) -> None:
        async with self._engine() as docker:
            stopped = False
            for container in await self._containers(docker, ws.workspace_id):
                info = await container.show()
                if info["State"].get("Running"):
                    grace = max(1, round(self.stop_grace_s))
                    await log(
                        "info",
                        f"docker: stopping container {info['Name'].lstrip('/')} "
                        f"(SIGTERM, SIGKILL after {grace}s)",
                    )
                    await container.stop(t=grace)
                    stopped = True
        await self._stop_relay(ws)
        run = self.run_dir(ws.workspace_id)
        for cred in await asyncio.to_thread(lambda: list(run.glob("*.cred"))):
            cred.unlink(missing_ok=True)
        if stopped:
            await log("info", "workspace container stopped")
        elif not quiet:
            await log("info", "no workspace container running")

    async def _remove_containers(
        self, docker: aiodocker.Docker, ws: WorkspaceRef, log: LogSink
    ) -> None:
        for container in await self._containers(docker, ws.workspace_id):
            info = await container.show()
            name = info["Name"].lstrip("/")
            if info["State"].get("Running"):
                grace = max(1, round(self.stop_grace_s))
                await log("info", f"docker: stopping container {name} (SIGKILL after {grace}s)")
                await container.stop(t=grace)
            await log("info", f"docker: removing container {name}")
            await container.delete(force=True)
