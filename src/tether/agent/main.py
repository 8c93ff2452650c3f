"""``tether agent``: the in-workspace process. Wires state, processes, MCP, HTTP API, session.

Start-up: bind the unix socket the backend chose (``TETHER_AGENT_LISTEN``) or 127.0.0.1 on a
free port, print ``{"address"}`` as one JSON line on stdout (never the dial secret: stdout is
the agent's log), serve the API, and (unless ``TETHER_AGENT_NO_SESSION=1``) keep the session
to the server. Shut-down (SIGTERM, SIGINT or the server's ``shutdown`` frame): report
``shutting_down``, terminate every started process group, stop MCP servers, report ``off``,
close the session and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from tether.agent.app import AgentApi, build_app
from tether.agent.config import AgentConfig
from tether.agent.frames import Hello, Manifest
from tether.agent.http import HttpServer
from tether.agent.lifecycle import LifecycleState
from tether.agent.mcpconfig import CONFIG_FILE_NAME, write_template_config
from tether.agent.mcphost import McpHost
from tether.agent.processes import ProcessManager
from tether.agent.session import AgentSession
from tether.agent.startup import run_startup_script
from tether.agent.state import AgentState, resolve_directory, with_login_shell
from tether.clock import SystemClock
from tether.errors import TetherError

log = logging.getLogger("tether.agent")

AGENT_VERSION = "0.1.0"
_SERVER_STOP_S = 5.0
_MCP_STOP_S = 10.0
_FLUSH_S = 2.0


def _ensure_dir(path: os.PathLike[str]) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        log.warning("cannot create working directory %s: %s", path, exc)


def listen_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound, listening TCP socket for the agent's HTTP server (``port=0``: a free one).

    Connections queue from the moment this returns, before the HTTP server accepts them.
    """
    # The protocol must be spelled IPPROTO_TCP, not left 0: asyncio sets TCP_NODELAY on an
    # accepted connection only when the socket says it is TCP (base_events._set_nodelay),
    # and accepted sockets inherit the listener's proto. Without TCP_NODELAY a response
    # written in two parts (a stream's head, then its chunks) hits Nagle + the client's
    # delayed ACK: every request on a reused keep-alive connection stalled ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def listen_unix(path: str) -> socket.socket:
    """A listening unix socket at ``path`` (a stale socket file is replaced), mode 0600."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _not_dumpable() -> None:
    """PR_SET_DUMPABLE 0: commands running as the same uid cannot read this process's
    memory, environment or file descriptors through /proc (nor ptrace it)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        log.warning("could not mark the agent non-dumpable")


class Agent:
    """One agent process's object graph; :meth:`serve` runs it until shutdown."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        clock = SystemClock()
        self.clock = clock
        self.state = AgentState(
            home=config.home,
            directory=resolve_directory(config.home, config.directory),
            clock=clock,
            base_env=with_login_shell(os.environ),
            lifecycle=LifecycleState.READY if config.no_session else LifecycleState.CREATED,
        )
        self.processes = ProcessManager(self.state, kill_grace_s=config.kill_grace_s)
        self.mcp = McpHost(
            directory=lambda: self.state.directory,
            env=self.state.command_env,
            clock=clock,
            connect_timeout_s=config.mcp_connect_timeout_s,
        )
        # The server derives the same secret from its key; standalone agents make one up.
        self.secret = config.dial_secret or secrets.token_urlsafe(32)
        self.stop = asyncio.Event()
        self.session: AgentSession | None = None
        self._startup_task: asyncio.Task[LifecycleState] | None = None
        self._address = ""

    def _report(self, state: LifecycleState) -> None:
        if self.session is not None:
            self.session.report_lifecycle(state)
        else:
            self.state.set_lifecycle(state)

    def _on_manifest(self, manifest: Manifest, first: bool) -> None:
        if not first:
            return
        self.state.directory = resolve_directory(self.config.home, manifest.directory)
        self.state.extra_env = dict(manifest.env)
        self.mcp.configure(
            connect_timeout_s=manifest.mcp_connect_timeout_s, retry_after_s=manifest.mcp_retry_s
        )
        _ensure_dir(self.state.directory)
        if manifest.mcp is not None:
            self._write_mcp_config(manifest.mcp)
        session = self.session
        assert session is not None
        cwd = self.state.directory if self.state.directory.is_dir() else self.config.home
        self._startup_task = asyncio.create_task(
            run_startup_script(
                processes=self.processes,
                script=manifest.startup_script,
                timeout_s=manifest.startup_script_timeout_s,
                cwd=cwd,
                report=self._report,
                emit=session.send,
            ),
            name="startup-script",
        )
        self._startup_task.add_done_callback(self._prewarm_mcp)

    def _prewarm_mcp(self, task: asyncio.Task[LifecycleState]) -> None:
        """Once the startup script made the workspace ready, start its MCP servers."""
        if (
            not task.cancelled()
            and task.exception() is None
            and task.result() is LifecycleState.READY
        ):
            self.mcp.prewarm()

    def _write_mcp_config(self, mcp: dict[str, Any]) -> None:
        # Synchronous on purpose: one small file, before any MCP listing or startup script.
        directory = self.state.directory
        try:
            written = write_template_config(directory, mcp)
        except OSError as exc:
            log.warning("cannot write the template's MCP config into %s: %s", directory, exc)
            return
        if written:
            log.info("wrote the template's MCP config to %s", directory / CONFIG_FILE_NAME)
        else:
            log.info("kept the existing %s in %s", CONFIG_FILE_NAME, directory)

    def _hello(self) -> Hello:
        return Hello(
            address=self._address,
            os=os.uname().sysname.lower(),
            version=AGENT_VERSION,
            pid=os.getpid(),
        )

    async def serve(self, announce: Callable[[str], None]) -> int:
        """Run until asked to stop; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        _ensure_dir(self.state.directory)

        if self.config.listen is not None:
            path = self.config.listen.removeprefix("unix:")
            sock = listen_unix(path)
            self._address = f"unix:{path}"
        else:
            sock = listen_socket()
            self._address = f"127.0.0.1:{sock.getsockname()[1]}"
        app = build_app(AgentApi(self.state, self.processes, self.mcp), self.secret)
        server = HttpServer(app)
        await server.start(sock)
        announce(json.dumps({"address": self._address}))

        session_task: asyncio.Task[None] | None = None
        if not self.config.no_session:
            assert self.config.server_url is not None and self.config.token is not None
            self.session = AgentSession(
                server_url=self.config.server_url,
                token=self.config.token,
                state=self.state,
                hello=self._hello,
                on_manifest=self._on_manifest,
                on_shutdown=self.stop.set,
                clock=self.clock,
                max_backoff_s=self.config.reconnect_max_s,
                auth_retry_s=self.config.auth_retry_s,
                server_socket=self.config.server_socket,
            )
            session_task = asyncio.create_task(self.session.run(), name="session")

        stop_wait = asyncio.create_task(self.stop.wait())
        watched: set[asyncio.Task[object]] = {stop_wait}
        if session_task is not None:
            watched.add(session_task)
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        for task in done - {stop_wait}:
            if task.cancelled() or task.exception() is not None:
                log.error("agent task %s ended unexpectedly: %r", task.get_name(), task.exception())
                code = 1
        stop_wait.cancel()
        await self._shutdown(server, session_task)
        return code

    async def _shutdown(
        self,
        server: HttpServer,
        session_task: asyncio.Task[None] | None,
    ) -> None:
        log.info("agent shutting down")
        self._report(LifecycleState.SHUTTING_DOWN)
        if self._startup_task is not None and not self._startup_task.done():
            self._startup_task.cancel()
            await asyncio.gather(self._startup_task, return_exceptions=True)
        await self.processes.close()
        try:
            await asyncio.wait_for(self.mcp.close(), _MCP_STOP_S)
        except TimeoutError:
            log.warning("MCP servers did not stop within %gs", _MCP_STOP_S)
        self._report(LifecycleState.OFF)
        if self.session is not None and session_task is not None:
            if self.session.connected.is_set():
                await self.session.flush(_FLUSH_S)
            await self.session.close()
            session_task.cancel()
            await asyncio.gather(session_task, return_exceptions=True)
        await server.close(_SERVER_STOP_S)


def _announce(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run() -> None:
    """Entry point of ``tether agent`` (and ``python -m tether.agent``); exits the process."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    _not_dumpable()
    try:
        config = AgentConfig.from_env(os.environ)
    except TetherError as exc:
        print(f"tether agent: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    _use_pidfd_child_watcher()
    code = asyncio.run(Agent(config).serve(_announce))
    raise SystemExit(code)


def _use_pidfd_child_watcher() -> None:
    """On Python 3.11, learn of the exits of asyncio subprocesses (MCP servers; commands are
    watched by :mod:`tether.agent.child`) through a pidfd in the event loop rather than
    asyncio's default there, a new thread blocked in ``waitpid`` per process. Python 3.12
    picks the pidfd watcher by itself; kernels without pidfd_open (< 5.3) keep the default."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
