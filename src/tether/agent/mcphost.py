"""The workspace's MCP servers, run and called with the official ``mcp`` SDK client.

Servers are started lazily on the first listing, each in its own task, and kept open; a
change of ``.mcp.json`` (mtime or size) closes them all and reloads. Each connect is bounded
by ``connect_timeout_s``; a listing waits at most its own bound and reports servers still
connecting as ``pending``. A server that fails is reported with ``status="error"`` and
retried in the background after a backoff that doubles per failure (negative cache).
Nothing a server does can crash the agent or delay the tools of the others.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import logging
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.agent.mcpconfig import CONFIG_FILE_NAME, ConfigError, ServerSpec, parse_config
from tether.agent.wire import McpCallResult, McpContent, McpServerStatus, McpTool, McpToolList
from tether.clock import Clock
from tether.errors import NotFound

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger("tether.agent")

TOOL_SEPARATOR = "__"
_CLOSE_TIMEOUT_S = 8.0  # the SDK's stdio shutdown waits up to ~6 s for a stubborn server
_MAX_PAGES = 20


def describe(exc: BaseException) -> str:
    """A one-line message for an error, digging into exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Connection:
    """One open MCP session, owned by its own task: the SDK's contexts are anyio task groups
    that must be exited by the task that entered them."""

    def __init__(self, spec: ServerSpec, *, cwd: Path, env: dict[str, str]) -> None:
        self.spec = spec
        self._cwd = cwd
        self._env = env
        self.client: Client | None = None
        self.error: str | None = None
        self.tools: list[Any] = []
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    def _cancel(self) -> None:
        """Cancel the session task once: a second cancel would cut short the SDK's own
        shutdown of the server process (it closes stdin, then terminates, then kills)."""
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    @property
    def alive(self) -> bool:
        """Connected and not given up: a connection found lost (``error`` set) is dead at
        once, even while its shutdown (the SDK stopping the server process) still runs in
        the background — or a slow shutdown would hold back the retry after the backoff."""
        return (
            self.error is None
            and self.client is not None
            and self._task is not None
            and not self._task.done()
        )

    async def start(self, timeout_s: float) -> asyncio.Task[None] | None:
        """Connect and list tools within ``timeout_s``; on failure ``error`` says why.

        A server that missed the deadline is cancelled but may take seconds to die; its task
        is returned for the caller to await later instead of delaying this answer."""
        self._task = asyncio.create_task(self._run(), name=f"mcp-{self.spec.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
            if self.error is None:
                self.tools = await asyncio.wait_for(self._list_tools(), timeout_s)
        except TimeoutError:
            self.error = f"timed out connecting after {timeout_s:g}s"
            self._cancel()
            return self._task
        except Exception as exc:
            self.error = f"listing tools failed: {describe(exc)}"
            self._cancel()
            return self._task
        return None

    async def _list_tools(self) -> list[Any]:
        assert self.client is not None
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self.client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _run(self) -> None:
        try:
            await _load_sdk()
            from mcp import Client, StdioServerParameters

            async with AsyncExitStack() as stack:
                if self.spec.command is not None:
                    target: Any = StdioServerParameters(
                        command=self.spec.command,
                        args=list(self.spec.args),
                        env={**self._env, **self.spec.env},
                        cwd=self._cwd,
                    )
                elif self.spec.headers:
                    from mcp.client.streamable_http import streamable_http_client
                    from mcp.shared._httpx_utils import create_mcp_http_client

                    http = await stack.enter_async_context(
                        create_mcp_http_client(headers=self.spec.headers)
                    )
                    target = streamable_http_client(str(self.spec.url), http_client=http)
                else:
                    target = str(self.spec.url)
                client = await stack.enter_async_context(Client(target))
                self.client = client
                self._ready.set()
                await self._stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = describe(exc)
            log.warning("MCP server %r failed: %s", self.spec.name, self.error)
        finally:
            self.client = None
            self._ready.set()

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        if self.client is None:
            raise RuntimeError("server is not connected")
        return await self.client.call_tool(tool, arguments, read_timeout_seconds=timeout_s)

    async def close(self) -> None:
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        if self.client is None:
            self._cancel()  # still connecting: nothing to close gracefully
        done, _ = await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT_S)
        if not done:
            # not cancel_and_wait: a second cancel would cut the SDK's shutdown short
            self._cancel()
            await asyncio.wait({task}, timeout=2.0)


@dataclass
class _Failure:
    """The negative cache of one server: how often it failed in a row and when last."""

    count: int
    at: float


class McpHost:
    """Lists and calls the tools of the MCP servers configured in the working directory.

    Every server connects in its own task, bounded by ``connect_timeout_s``; a listing never
    waits longer than its ``wait_s`` and reports servers still connecting as ``pending``
    (their tools join a later listing). A server that failed is retried only after a backoff
    (``retry_after_s`` doubling per failure in a row, capped at ``max_retry_after_s``) and
    in the background: a listing never waits for a retry. A change of ``.mcp.json`` or a
    successful connect clears the server's backoff."""

    def __init__(
        self,
        *,
        directory: Callable[[], Path],
        env: Callable[[], dict[str, str]],
        clock: Clock,
        connect_timeout_s: float = 30.0,
        call_timeout_s: float = 300.0,
        retry_after_s: float = 10.0,
        max_retry_after_s: float = 300.0,
    ) -> None:
        self._directory = directory
        self._env = env
        self._clock = clock
        self.connect_timeout_s = connect_timeout_s
        self._call_timeout = call_timeout_s
        self.retry_after_s = retry_after_s
        self.max_retry_after_s = max_retry_after_s
        self._lock = asyncio.Lock()
        self._loaded = False
        self._signature: tuple[str, int, int] | None = None
        self._config_error: str | None = None
        self._specs: list[ServerSpec] = []
        self._conns: dict[str, _Connection] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._started: dict[str, float] = {}  # loop time each connect in flight began
        self._retrying: set[str] = set()  # connecting again after a failure: never waited for
        self._failures: dict[str, _Failure] = {}
        self._routes: dict[str, tuple[str, str]] = {}
        self._dying: set[asyncio.Task[Any]] = set()  # servers still shutting down

    def configure(
        self, *, connect_timeout_s: float | None = None, retry_after_s: float | None = None
    ) -> None:
        """Bounds sent by the server in the manifest (``None`` keeps the current one)."""
        if connect_timeout_s is not None:
            self.connect_timeout_s = connect_timeout_s
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    def backoff_s(self, name: str) -> float | None:
        """How long the failed server ``name`` waits before its next attempt (None: no
        failure on record)."""
        failure = self._failures.get(name)
        if failure is None:
            return None
        return min(self.retry_after_s * 2 ** (failure.count - 1), self.max_retry_after_s)

    async def _reload_if_changed(self) -> None:
        path = self._directory() / CONFIG_FILE_NAME

        def read() -> tuple[tuple[str, int, int] | None, str | None]:
            try:
                st = path.stat()
                return (str(path), st.st_mtime_ns, st.st_size), path.read_text("utf-8")
            except (FileNotFoundError, NotADirectoryError):
                return None, None
            except (OSError, UnicodeDecodeError) as exc:
                return (str(path), -1, -1), f"\x00{exc}"

        signature, text = await asyncio.to_thread(read)
        if self._loaded and signature == self._signature:
            return
        self._close_all()
        self._loaded = True
        self._signature = signature
        self._specs, self._config_error = [], None
        if text is None:
            return
        if text.startswith("\x00"):
            self._config_error = f"cannot read {CONFIG_FILE_NAME}: {text[1:]}"
            return
        try:
            self._specs = parse_config(text)
        except ConfigError as exc:
            self._config_error = str(exc)

    def _maybe_start(self, spec: ServerSpec) -> None:
        """Start connecting ``spec`` unless it is connected, connecting, or backing off."""
        name = spec.name
        conn = self._conns.get(name)
        if name in self._connecting or (conn is not None and conn.alive):
            return
        if conn is not None and name not in self._failures:
            # It was connected and has died since: a failure like any other, so a server
            # that crashes after each start is not restarted on every listing.
            self._failures[name] = _Failure(1, self._clock.monotonic())
            conn.error = conn.error or "disconnected"
            log.warning("MCP server %r: %s (retry in %gs)", name, conn.error, self.retry_after_s)
        backoff = self.backoff_s(name)
        failure = self._failures.get(name)
        if failure is not None and backoff is not None:
            if self._clock.monotonic() - failure.at < backoff:
                return  # negative cache: report the last failure, do not retry yet
            self._retrying.add(name)
        else:
            self._retrying.discard(name)
        if conn is not None:
            self._retire(conn.close())
        fresh = _Connection(spec, cwd=self._directory(), env=self._env())
        self._conns[name] = fresh
        task = asyncio.create_task(self._connect(fresh), name=f"mcp-connect-{name}")
        self._connecting[name] = task
        self._started[name] = asyncio.get_running_loop().time()

        def done(t: asyncio.Task[None]) -> None:
            if self._connecting.get(name) is t:
                del self._connecting[name]
                self._started.pop(name, None)

        task.add_done_callback(done)

    async def _connect(self, conn: _Connection) -> None:
        name = conn.spec.name
        dying = await conn.start(self.connect_timeout_s)
        if dying is not None:
            self._retire(dying)
        if self._conns.get(name) is not conn:
            return  # the config changed meanwhile
        if conn.error is not None:
            failure = self._failures.get(name)
            count = failure.count + 1 if failure is not None else 1
            self._failures[name] = _Failure(count, self._clock.monotonic())
            log.warning("MCP server %r: %s (retry in %gs)", name, conn.error, self.backoff_s(name))
        else:
            self._failures.pop(name, None)
        self._retrying.discard(name)

    def _retire(self, aw: Any) -> None:
        task = asyncio.ensure_future(aw)
        self._dying.add(task)
        task.add_done_callback(self._dying.discard)

    def prewarm(self) -> None:
        """Start the configured servers now, in the background (the workspace is ready), so
        the first chat turn finds them connected instead of waiting for cold starts."""

        async def warm() -> None:
            try:
                await self.list_tools(wait_s=0)
            except Exception as exc:  # a listing reports errors; this is belt and braces
                log.warning("starting the MCP servers failed: %s", describe(exc))

        self._retire(warm())

    async def list_tools(self, wait_s: float | None = None) -> McpToolList:
        """Start whatever is not connected (in parallel, each in the background) and report
        tools and servers; servers still connecting are ``pending``.

        A server on its first attempt is waited for until ``wait_s`` (default: the connect
        bound) after *its attempt began*, so listings that follow each other do not wait
        for the same server again; a retry after a failure is never waited for."""
        bound = self.connect_timeout_s + 1.0 if wait_s is None else wait_s
        async with self._lock:
            await self._reload_if_changed()
            if self._config_error is None:
                for spec in self._specs:
                    if spec.error is None:
                        self._maybe_start(spec)
            now = asyncio.get_running_loop().time()
            remaining = {
                task: self._started.get(name, now) + bound - now
                for name, task in self._connecting.items()
                if name not in self._retrying
            }
        waited = {task: left for task, left in remaining.items() if left > 0}
        if waited:
            await asyncio.wait(set(waited), timeout=max(waited.values()))
        return self._snapshot()

    def _snapshot(self) -> McpToolList:
        if self._config_error is not None:
            self._routes = {}
            bad = McpServerStatus(name=CONFIG_FILE_NAME, status="error", error=self._config_error)
            return McpToolList(tools=[], servers=[bad])
        tools: list[McpTool] = []
        servers: list[McpServerStatus] = []
        routes: dict[str, tuple[str, str]] = {}
        for spec in self._specs:
            conn = self._conns.get(spec.name)
            if spec.error is None and spec.name in self._connecting:
                servers.append(McpServerStatus(name=spec.name, status="pending"))
                continue
            error = spec.error or (conn.error if conn is not None else "not started")
            if error is None and conn is not None and not conn.alive:
                error = "disconnected"
            if error is not None or conn is None:
                servers.append(
                    McpServerStatus(
                        name=spec.name,
                        status="error",
                        error=error,
                        retry_in_s=self._retry_in(spec.name),
                    )
                )
                continue
            servers.append(McpServerStatus(name=spec.name, status="ok"))
            for tool in conn.tools:
                name = f"{spec.name}{TOOL_SEPARATOR}{tool.name}"
                routes[name] = (spec.name, tool.name)
                tools.append(
                    McpTool(
                        name=name,
                        server=spec.name,
                        tool=tool.name,
                        description=tool.description or "",
                        input_schema=dict(tool.input_schema or {}),
                    )
                )
        self._routes = routes
        return McpToolList(tools=tools, servers=servers)

    def _retry_in(self, name: str) -> float | None:
        failure, backoff = self._failures.get(name), self.backoff_s(name)
        if failure is None or backoff is None:
            return None
        return max(0.0, round(failure.at + backoff - self._clock.monotonic(), 3))

    async def call(self, name: str, arguments: dict[str, Any]) -> McpCallResult:
        """Call ``server__tool``; an unknown name raises :class:`NotFound`."""
        if name not in self._routes:
            await self.list_tools(wait_s=0)
            # A tool of a server still connecting (e.g. the agent restarted): wait for that
            # server only, within its connect bound; any other unknown name is a 404 at once.
            owners = {
                task
                for server, task in self._connecting.items()
                if name.startswith(f"{server}{TOOL_SEPARATOR}")
            }
            if name not in self._routes and owners:
                await asyncio.wait(owners, timeout=self.connect_timeout_s + 1.0)
                self._snapshot()
        route = self._routes.get(name)
        if route is None:
            raise NotFound(f"unknown MCP tool {name!r}")
        server, tool = route
        conn = self._conns.get(server)
        if conn is None or not conn.alive:
            return _error_result(f"MCP server {server!r} is not connected")
        try:
            result = await conn.call(tool, arguments, self._call_timeout)
        except Exception as exc:
            log.warning("MCP call %s failed: %s", name, describe(exc))
            if _connection_closed(exc):
                self._lost(conn)
            return _error_result(f"calling {name} failed: {describe(exc)}")
        return McpCallResult(
            content=[_content(block) for block in result.content], is_error=bool(result.is_error)
        )

    def _lost(self, conn: _Connection) -> None:
        """The server behind ``conn`` went away (e.g. its process exited): a failure, so it
        is restarted after the backoff rather than on the next listing."""
        name = conn.spec.name
        if self._conns.get(name) is not conn or conn.error is not None:
            return
        failure = self._failures.get(name)
        self._failures[name] = _Failure(
            failure.count + 1 if failure else 1, self._clock.monotonic()
        )
        conn.error = "the server closed the connection"
        self._retire(conn.close())
        log.warning("MCP server %r: %s (retry in %gs)", name, conn.error, self.backoff_s(name))

    def _close_all(self) -> None:
        """Forget every server (a config change): connects in flight are cancelled and open
        servers close in the background, so a stubborn one never delays the new config."""
        connecting, self._connecting = list(self._connecting.values()), {}
        self._started.clear()
        conns, self._conns = list(self._conns.values()), {}
        self._failures.clear()
        self._retrying.clear()
        self._routes = {}
        for task in connecting:
            task.cancel()
            self._retire(task)
        for conn in conns:
            self._retire(conn.close())

    async def close(self) -> None:
        """Stop every server (each bounded), e.g. at agent shutdown."""
        async with self._lock:
            self._close_all()
            if self._dying:
                await asyncio.wait(set(self._dying), timeout=_CLOSE_TIMEOUT_S + 3.0)


_SDK_MODULES = (
    "mcp",
    "mcp.client.streamable_http",
    "mcp.shared._httpx_utils",
    "mcp.shared.exceptions",
    "mcp_types",
)


def _import_sdk() -> None:
    for name in _SDK_MODULES:
        importlib.import_module(name)


async def _load_sdk() -> None:
    """Import the MCP SDK (with pydantic, anyio and httpx; the agent loads none of them at
    start-up) on first MCP use, in a worker thread: the import takes ~0.3 s of CPU (seconds
    on a busy machine), and the loop must keep answering health checks, session pings and
    an MCP listing's own wait bound meanwhile."""
    if not all(name in sys.modules for name in _SDK_MODULES):
        await asyncio.to_thread(_import_sdk)


def _connection_closed(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    return isinstance(exc, MCPError) and exc.error.code == CONNECTION_CLOSED


def _error_result(message: str) -> McpCallResult:
    return McpCallResult(content=[McpContent(type="text", text=message)], is_error=True)


def _content(block: Any) -> McpContent:
    kind = getattr(block, "type", "")
    if kind == "text":
        return McpContent(type="text", text=block.text)
    if kind in ("image", "audio"):
        data = block.data
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii")
        return McpContent(type=kind, data=data, mime_type=block.mime_type)
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        if text is not None:
            return McpContent(type="text", text=text)
        return McpContent(
            type="text", text=f"[binary resource {resource.uri}]", mime_type=resource.mime_type
        )
    if kind == "resource_link":
        return McpContent(type="text", text=f"[resource {block.uri}]")
    dump = getattr(block, "model_dump_json", None)
    return McpContent(type="text", text=dump() if dump is not None else str(block))
