"""The local backend: each workspace is a directory on this machine and its agents run in a
bubblewrap sandbox each (:mod:`tether.workspaces.backends.sandbox`; Linux, relies on
``/proc``). ``unsandboxed=True`` runs them as plain child processes: development only.

Layout of ``root/<workspace_id>/``::

    home/                    HOME of the agents (the template's directory lives inside)
    agent-<name>.log         stdout and stderr of each agent, appended across builds
    agents/<agent_id>.pid    JSON {pid, start_ticks, name, init_pid, init_ticks}: lets a
                             restarted server stop them (pid: the agent's host pid; init: the
                             sandbox's PID-namespace init)

and ``run_root/<workspace_id>/`` (short, for unix socket paths): the workspace's private
runtime dir, bound into its sandbox only. Each agent listens on ``<agent_id>.sock`` there and
the server dials that path (:meth:`LocalBackend.dial_address`), never an address an agent
claims.

Agents start with a clean environment built from an allowlist: ``PATH``, ``HOME``, ``USER``,
``LANG``, ``TERM``, ``TZ``, the agent's connection settings (``TETHER_AGENT_URL``,
``TETHER_AGENT_LISTEN``, ``TETHER_AGENT_ID``, ``TETHER_WORKSPACE_ID``,
``TETHER_WORKSPACE_NAME``, ``TETHER_WORKSPACE_OWNER``, ``TETHER_TEMPLATE_NAME``), one
``TETHER_PARAM_<NAME>`` per build parameter and ``extra_env``. The agent token and dial
secret are not in the environment: they arrive on an inherited pipe
(``TETHER_AGENT_CREDENTIALS_FD``) the agent reads and closes. Stopping sends SIGTERM to the
agents and every process whose environment holds the workspace id (see
:mod:`tether.workspaces.backends.procs`), then SIGKILLs the sandbox's PID-namespace init after
``stop_grace_s``, which takes every process of the workspace down.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from tether.clock import Clock, SystemClock
from tether.errors import BackendError
from tether.private import open_private_append
from tether.workspaces.backends import procs
from tether.workspaces.backends import sandbox_launch as launch
from tether.workspaces.backends.base import AgentLaunch, LogSink, WorkspaceRef, WorkspaceRuntime
from tether.workspaces.backends.procs import Proc
from tether.workspaces.backends.sandbox import Sandbox, absolute_paths

_POLL_S = 0.05
_KILL_WAIT_S = 5.0  # bound on waiting for SIGKILLed processes to vanish
_KILL_ROUNDS = 3  # rescans after SIGKILL, for children forked during the shutdown
_SANDBOX_START_S = 10.0  # bound on bwrap setting up a sandbox and exec'ing the agent
_PASSED_ENV = ("PATH", "LANG", "TERM", "TZ")
RELAY_SOCKET = "server.sock"


def default_run_root() -> Path:
    """Short, per server uid: unix socket paths are limited to 107 bytes."""
    return Path(f"/tmp/tether-run-{os.geteuid()}")


class LocalBackend:
    """Runs workspaces as directories and processes on the server's machine."""

    name = "local"

    def __init__(
        self,
        root: Path,
        server_url: str,
        *,
        agent_command: list[str] | None = None,
        stop_grace_s: float = 3.0,
        extra_env: dict[str, str] | None = None,
        clock: Clock | None = None,
        unsandboxed: bool = False,
        sandbox: Sandbox | None = None,
        run_root: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.server_url = server_url
        self.agent_command = list(agent_command or [sys.executable, "-m", "tether.agent"])
        self.stop_grace_s = stop_grace_s
        self.extra_env = dict(extra_env or {})
        self._clock = clock or SystemClock()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self.sandbox = None if unsandboxed else (sandbox or Sandbox())
        self.run_root = run_root or default_run_root()

    def dial_address(self, workspace_id: uuid.UUID, agent_id: uuid.UUID) -> str:
        """Where the server reaches this agent: a unix socket in the workspace's private
        runtime dir. Decided here; what an agent reports is ignored."""
        return f"unix:{self.run_dir(workspace_id) / f'{agent_id}.sock'}"

    def run_dir(self, workspace_id: uuid.UUID) -> Path:
        return self.run_root / str(workspace_id)

    def workspace_dir(self, workspace_id: uuid.UUID) -> Path:
        return self.root / str(workspace_id)

    def home(self, workspace_id: uuid.UUID) -> Path:
        return self.workspace_dir(workspace_id) / "home"

    def _lock(self, workspace_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(workspace_id, asyncio.Lock())

    async def start(self, ws: WorkspaceRef, agents: list[AgentLaunch], log: LogSink) -> None:
        async with self._lock(ws.workspace_id):
            await self._stop(ws, log, quiet=True)
            wdir = self.workspace_dir(ws.workspace_id)
            if self.sandbox is not None:
                await asyncio.to_thread(self.sandbox.check)
            await asyncio.to_thread(self._prepare, ws.workspace_id)
            if not ws.network and self.sandbox is None:
                await log("warn", "network: false is not enforced without the sandbox")
            for agent in agents:
                try:
                    if not ws.network and self.sandbox is not None and agent is agents[0]:
                        await asyncio.to_thread(self._spawn_relay, ws)
                        await log("info", "no network: the agent session goes through a relay")
                    proc = await asyncio.to_thread(self._spawn, ws, agent)
                except BackendError as exc:
                    await log("error", exc.message)
                    await self._stop(ws, log, quiet=True)  # no half-started workspace
                    raise
                await log(
                    "info",
                    f"started agent {agent.name} (pid {proc.pid}); "
                    f"log: {wdir / f'agent-{agent.name}.log'}",
                )

    async def stop(self, ws: WorkspaceRef, log: LogSink) -> None:
        async with self._lock(ws.workspace_id):
            await self._stop(ws, log, quiet=False)

    async def delete(self, ws: WorkspaceRef, log: LogSink) -> None:
        async with self._lock(ws.workspace_id):
            await self._stop(ws, log, quiet=False)
            wdir = self.workspace_dir(ws.workspace_id)
            await asyncio.to_thread(shutil.rmtree, self.run_dir(ws.workspace_id), True)
            if wdir.exists():
                await asyncio.to_thread(shutil.rmtree, wdir, ignore_errors=True)
                if wdir.exists():
                    raise BackendError(f"could not remove workspace directory {wdir}")
                await log("info", f"removed {wdir}")

    async def inspect(self, ws: WorkspaceRef) -> WorkspaceRuntime:
        wdir = self.workspace_dir(ws.workspace_id)
        recorded = await asyncio.to_thread(_read_pidfiles, wdir)
        live = {aid: p.pid for aid, p in recorded.items() if procs.alive(p)}
        home = self.home(ws.workspace_id)
        return WorkspaceRuntime(
            running=bool(live), agent_pids=live, home=str(home) if home.exists() else None
        )

    # -- launching ---------------------------------------------------------------------

    def _prepare(self, workspace_id: uuid.UUID) -> None:
        wdir = self.workspace_dir(workspace_id)
        home = wdir / "home"
        fresh = not home.exists()
        home.mkdir(parents=True, exist_ok=True)
        (wdir / "agents").mkdir(exist_ok=True)
        launch.private_root(self.run_root)
        run = self.run_dir(workspace_id)
        run.mkdir(mode=0o700, exist_ok=True)
        if self.sandbox is not None:
            # A home made before the sandbox (or by root) is handed over once, in full.
            self.sandbox.own(home, recursive=fresh or home.stat().st_uid != self.sandbox.host_uid)
            self.sandbox.own(run, recursive=False)

    def _env(self, ws: WorkspaceRef, agent: AgentLaunch, token_fd: int) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(self.extra_env)
        home = str(self.home(ws.workspace_id))
        env.update(
            HOME=home,
            PWD=home,
            USER=ws.owner_name,
            TETHER_AGENT_URL=self.server_url,
            TETHER_AGENT_CREDENTIALS_FD=str(token_fd),
            TETHER_AGENT_LISTEN=self.dial_address(ws.workspace_id, agent.agent_id),
            TETHER_AGENT_ID=str(agent.agent_id),
            TETHER_WORKSPACE_NAME=ws.name,
            TETHER_WORKSPACE_OWNER=ws.owner_name,
            TETHER_TEMPLATE_NAME=ws.template_name,
        )
        if not ws.network and self.sandbox is not None:
            env["TETHER_AGENT_SERVER_SOCKET"] = str(self.run_dir(ws.workspace_id) / RELAY_SOCKET)
        env.update({f"TETHER_PARAM_{k.upper()}": v for k, v in ws.parameters.items()})
        # Set last: stopping the workspace finds its processes by this variable.
        env[procs.WORKSPACE_ENV] = str(ws.workspace_id)
        return env

    def _spawn(self, ws: WorkspaceRef, agent: AgentLaunch) -> Proc:
        """Start one agent (blocking; runs in a thread) and record its pid file."""
        wdir = self.workspace_dir(ws.workspace_id)
        home = self.home(ws.workspace_id)
        token_r, token_w = os.pipe()
        info_r, info_w = os.pipe()
        try:
            # token and dial secret: far below a pipe's buffer, so the write never blocks
            os.write(token_w, f"{agent.token}\n{agent.dial_secret}".encode())
            os.close(token_w)
            command = self.agent_command
            if shutil.which(command[0]) is None:
                raise BackendError(
                    f"cannot start agent {agent.name!r}: command not found: {command[0]}"
                )
            fds: tuple[int, ...] = (token_r,)
            if self.sandbox is not None:
                command = self.sandbox.command(
                    self.agent_command,
                    writable=[home, self.run_dir(ws.workspace_id)],
                    ro_extra=absolute_paths(self.agent_command),
                    network=ws.network,
                    chdir=home,
                    info_fd=info_w,
                )
                fds = (token_r, info_w)
            proc = self._popen(agent, wdir, command, self._env(ws, agent, token_r), fds)
            os.close(info_w)
            info_w = -1
            if self.sandbox is None:
                agent_pid, init = proc.pid, None
            else:
                logfile = wdir / f"agent-{agent.name}.log"
                init_pid = launch.read_init_pid(info_r, _SANDBOX_START_S)
                if init_pid is None:
                    raise BackendError(
                        f"cannot start agent {agent.name!r}: the sandbox did not start "
                        f"({launch.log_tail(logfile)}); see {logfile}"
                    )
                init = launch.proc(init_pid)
                child = launch.first_child(init_pid, _SANDBOX_START_S)
                if child is None or init is None:
                    raise BackendError(
                        f"cannot start agent {agent.name!r}: it exited at once; see {logfile}"
                    )
                agent_pid = child
        finally:
            for fd in (token_r, info_r, info_w):
                if fd >= 0:
                    os.close(fd)
        ticks = procs.start_ticks(agent_pid)
        record = {
            "pid": agent_pid,
            "start_ticks": ticks,
            "name": agent.name,
            "init_pid": init.pid if init else None,
            "init_ticks": init.start_ticks if init else None,
        }
        (wdir / "agents" / f"{agent.agent_id}.pid").write_text(json.dumps(record))
        return Proc(agent_pid, ticks or 0)

    def _spawn_relay(self, ws: WorkspaceRef) -> None:
        sock = self.run_dir(ws.workspace_id) / RELAY_SOCKET
        wdir = self.workspace_dir(ws.workspace_id)
        launch.start_relay(self.server_url, wdir, sock, ws.workspace_id, _SANDBOX_START_S)

    def _popen(
        self,
        agent: AgentLaunch,
        wdir: Path,
        command: list[str],
        env: dict[str, str],
        fds: tuple[int, ...],
    ) -> subprocess.Popen[bytes]:
        with open_private_append(wdir / f"agent-{agent.name}.log") as out:
            try:
                proc = subprocess.Popen(
                    command,
                    cwd=wdir / "home",
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=fds,
                )
            except FileNotFoundError as exc:
                raise BackendError(
                    f"cannot start agent {agent.name!r}: command not found: {command[0]}"
                ) from exc
            except OSError as exc:
                raise BackendError(
                    f"cannot start agent {agent.name!r} ({command[0]}): {exc.strerror or exc}"
                ) from exc
        # Reap the child when it exits so it never lingers as a zombie; the thread ends
        # with the process, which stop() bounds.
        threading.Thread(target=proc.wait, name=f"reap-agent-{proc.pid}", daemon=True).start()
        return proc

    # -- stopping ----------------------------------------------------------------------

    async def _stop(self, ws: WorkspaceRef, log: LogSink, *, quiet: bool) -> None:
        wdir = self.workspace_dir(ws.workspace_id)
        recorded = list((await asyncio.to_thread(_read_pidfiles, wdir)).values())
        inits = [p for p in await asyncio.to_thread(launch.read_inits, wdir) if procs.alive(p)]
        targets = await asyncio.to_thread(procs.workspace_processes, ws.workspace_id, recorded)
        if not targets and inits:
            await self._kill_inits(inits, log)
        elif not targets:
            if not quiet:
                await log("info", "no workspace processes running")
            await asyncio.to_thread(_clear_pidfiles, wdir)
            return
        pids = ", ".join(str(p.pid) for p in targets)
        await log("info", f"stopping {len(targets)} process(es) (SIGTERM): {pids}")
        await self._signal(targets, signal.SIGTERM, log)
        left = await self._wait_gone(targets, self.stop_grace_s)
        await self._kill_inits(inits, log)
        for _ in range(_KILL_ROUNDS):
            # Rescan: a process may have forked while it was shutting down.
            left = await asyncio.to_thread(procs.workspace_processes, ws.workspace_id, left)
            if not left:
                break
            pids = ", ".join(str(p.pid) for p in left)
            await log(
                "warn", f"killing {len(left)} process(es) still running after SIGTERM: {pids}"
            )
            await self._signal(left, signal.SIGKILL, log)
            left = await self._wait_gone(left, _KILL_WAIT_S)
        if left:
            pids = ", ".join(str(p.pid) for p in left)
            raise BackendError(f"could not stop workspace processes: {pids}")
        await asyncio.to_thread(_clear_pidfiles, wdir)
        await log("info", "workspace processes stopped")

    async def _kill_inits(self, inits: list[Proc], log: LogSink) -> None:
        """SIGKILL each sandbox's PID-namespace init: the kernel then kills every process
        in that namespace, however it hid (new session, cleared environment)."""
        live = [p for p in inits if procs.alive(p)]
        if not live:
            return
        pids = ", ".join(str(p.pid) for p in live)
        await log(
            "warn", f"killing the workspace sandbox (init {pids}) and every process left in it"
        )
        await self._signal(live, signal.SIGKILL, log)
        left = await self._wait_gone(live, _KILL_WAIT_S)
        if left:
            pids = ", ".join(str(p.pid) for p in left)
            raise BackendError(f"could not stop workspace sandbox: {pids}")

    async def _signal(self, targets: list[Proc], sig: signal.Signals, log: LogSink) -> None:
        for proc in targets:
            problem = procs.send(proc, sig)
            if problem is not None:
                await log("warn", f"could not send {sig.name}: {problem}")

    async def _wait_gone(self, targets: list[Proc], timeout_s: float) -> list[Proc]:
        """Poll until the processes are gone or ``timeout_s`` passed; returns the survivors."""
        deadline = self._clock.monotonic() + timeout_s
        left = targets
        while True:
            left = [p for p in left if procs.alive(p)]
            if not left or self._clock.monotonic() >= deadline:
                return left
            await self._clock.sleep(_POLL_S)


def _read_pidfiles(wdir: Path) -> dict[uuid.UUID, Proc]:
    out: dict[uuid.UUID, Proc] = {}
    agents = wdir / "agents"
    if not agents.is_dir():
        return out
    for path in agents.glob("*.pid"):
        try:
            data = json.loads(path.read_text())
            agent_id = uuid.UUID(path.stem)
            pid, ticks = int(data["pid"]), data["start_ticks"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a torn or foreign file: the /proc scan still finds the processes
        if ticks is not None:
            out[agent_id] = Proc(pid, int(ticks))
    return out


def _clear_pidfiles(wdir: Path) -> None:
    agents = wdir / "agents"
    if agents.is_dir():
        for path in agents.glob("*.pid"):
            path.unlink(missing_ok=True)
