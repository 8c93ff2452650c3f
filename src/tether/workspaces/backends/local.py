"""The local backend: each workspace is a directory on this machine and its agents are
ordinary child processes of the server (Linux; relies on ``/proc``).

Layout of ``root/<workspace_id>/``::

    home/                    HOME of the agents (the template's directory lives inside)
    agent-<name>.log         stdout and stderr of each agent, appended across builds
    agents/<agent_id>.pid    JSON {pid, start_ticks, name}: lets a restarted server stop them

Agents get ``HOME``, ``TETHER_AGENT_URL``, ``TETHER_AGENT_TOKEN``, ``TETHER_WORKSPACE_ID``,
``TETHER_AGENT_ID``, ``TETHER_WORKSPACE_NAME``, ``TETHER_WORKSPACE_OWNER``,
``TETHER_TEMPLATE_NAME`` and one ``TETHER_PARAM_<NAME>`` per build parameter; the server's own
``TETHER_*`` variables are not passed on. Stopping finds every process whose environment
holds the workspace id (see :mod:`tether.workspaces.backends.procs`), sends SIGTERM, and
SIGKILLs what is left after ``stop_grace_s``.
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
from tether.workspaces.backends.base import AgentLaunch, LogSink, WorkspaceRef, WorkspaceRuntime
from tether.workspaces.backends.procs import Proc

_POLL_S = 0.05
_KILL_WAIT_S = 5.0  # bound on waiting for SIGKILLed processes to vanish
_KILL_ROUNDS = 3  # rescans after SIGKILL, for children forked during the shutdown


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
    ) -> None:
        self.root = Path(root)
        self.server_url = server_url
        self.agent_command = list(agent_command or [sys.executable, "-m", "tether.agent"])
        self.stop_grace_s = stop_grace_s
        self.extra_env = dict(extra_env or {})
        self._clock = clock or SystemClock()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

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
            await asyncio.to_thread(_prepare, wdir)
            for agent in agents:
                try:
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

    def _env(self, ws: WorkspaceRef, agent: AgentLaunch) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env.update(self.extra_env)
        home = str(self.home(ws.workspace_id))
        env.update(
            HOME=home,
            PWD=home,
            TETHER_AGENT_URL=self.server_url,
            TETHER_AGENT_TOKEN=agent.token,
            TETHER_AGENT_DIAL_SECRET=agent.dial_secret,
            TETHER_AGENT_ID=str(agent.agent_id),
            TETHER_WORKSPACE_NAME=ws.name,
            TETHER_WORKSPACE_OWNER=ws.owner_name,
            TETHER_TEMPLATE_NAME=ws.template_name,
        )
        env.update({f"TETHER_PARAM_{k.upper()}": v for k, v in ws.parameters.items()})
        # Set last: stopping the workspace finds its processes by this variable.
        env[procs.WORKSPACE_ENV] = str(ws.workspace_id)
        return env

    def _spawn(self, ws: WorkspaceRef, agent: AgentLaunch) -> subprocess.Popen[bytes]:
        """Start one agent (blocking; runs in a thread) and record its pid file."""
        wdir = self.workspace_dir(ws.workspace_id)
        command = self.agent_command
        with open_private_append(wdir / f"agent-{agent.name}.log") as out:
            try:
                proc = subprocess.Popen(
                    command,
                    cwd=self.home(ws.workspace_id),
                    env=self._env(ws, agent),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
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
        ticks = procs.start_ticks(proc.pid)
        record = {"pid": proc.pid, "start_ticks": ticks, "name": agent.name}
        (wdir / "agents" / f"{agent.agent_id}.pid").write_text(json.dumps(record))
        return proc

    # -- stopping ----------------------------------------------------------------------

    async def _stop(self, ws: WorkspaceRef, log: LogSink, *, quiet: bool) -> None:
        wdir = self.workspace_dir(ws.workspace_id)
        recorded = list((await asyncio.to_thread(_read_pidfiles, wdir)).values())
        targets = await asyncio.to_thread(procs.workspace_processes, ws.workspace_id, recorded)
        if not targets:
            if not quiet:
                await log("info", "no workspace processes running")
            await asyncio.to_thread(_clear_pidfiles, wdir)
            return
        pids = ", ".join(str(p.pid) for p in targets)
        await log("info", f"stopping {len(targets)} process(es) (SIGTERM): {pids}")
        await self._signal(targets, signal.SIGTERM, log)
        left = await self._wait_gone(targets, self.stop_grace_s)
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


def _prepare(wdir: Path) -> None:
    (wdir / "home").mkdir(parents=True, exist_ok=True)
    (wdir / "agents").mkdir(exist_ok=True)


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
