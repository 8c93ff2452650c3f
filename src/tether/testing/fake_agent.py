"""An in-process fake of one workspace agent, speaking :class:`tether.agentconn.AgentClient`'s
API without HTTP or processes.

``tests/contract/test_agent_contract.py`` holds it to a real ``tether agent``: same calls,
same assertions. What it fakes and what it shares:

* **files, instruction files, skills** live in a real directory (``home`` and the working
  ``directory``) and go through the agent's own pure functions (:mod:`tether.agent.files`,
  :mod:`tether.agent.instructions`, :mod:`tether.agent.skills`), so paths, windows, edit
  rules and the ``AGENTS.md``/skill lookup cannot drift; the fake does this small disk work
  inline (no worker thread), so tests on a fake clock stay deterministic;
* **commands are scripted**: :meth:`FakeAgent.script` maps a command line to its output,
  exit code and run time; an unscripted command is "not found" (exit 127), like bash;
* **MCP servers are scripted**: connected, failing, or pending until an event is set (a
  hanging server never sets it); a listing waits for pending servers only up to ``wait``
  after their first attempt, and a call to a tool of a pending server waits for that server
  within its connect bound, as the agent does;
* **errors** are what :class:`AgentClient` raises for the agent's answers: request bodies are
  validated with the agent's schemas (400 ``invalid_input``), unknown processes and tools are
  404 ``not_found``, and a stopped agent (:meth:`FakeAgent.stop`) fails every call with
  :class:`AgentTransportError`.

:class:`~tether.testing.fake_agent_dialer.FakeAgentDialer` (``testing/fake_agent_dialer.py``)
hands these agents to chatd's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel

from tether.agent import files, wire
from tether.agent.instructions import find_instruction_files
from tether.agent.schemas import (
    EXEC_DEFAULT_TIMEOUT_S,
    BackgroundStarted,
    EditResult,
    ExecResult,
    FileEdits,
    Health,
    Instructions,
    ListDirResult,
    McpCallResult,
    McpContent,
    McpServerStatus,
    McpTool,
    McpToolList,
    ProcessInfo,
    ProcessList,
    ProcessOutput,
    ReadFileResult,
    SignalResult,
    WriteFileResult,
)
from tether.agent.skills import find_skills
from tether.agent.state import resolve_path
from tether.errors import (
    AgentRequestFailed,
    AgentTransportError,
    InvalidInput,
    NotFound,
    TetherError,
)

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

SIGNAL_EXIT = {"terminate": 128 + 15, "kill": 128 + 9}  # as a shell reports a killed command
MCP_CONNECT_TIMEOUT_S = 30.0  # the agent's default connect bound
TOOL_SEPARATOR = "__"


@dataclass(frozen=True)
class FakeCommand:
    """What a scripted command does: print ``output``, then exit with ``exit_code`` after
    ``runs_s`` seconds (``None``: runs until it is signalled or times out)."""

    output: str = ""
    exit_code: int = 0
    runs_s: float | None = 0.0


@dataclass
class FakeMcpTool:
    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    # Given the arguments, the result's text; raising makes an ``is_error`` result.
    handler: Callable[[dict[str, Any]], str | Awaitable[str]] | None = None


@dataclass
class FakeMcpServer:
    """A workspace MCP server: connected at once, failing with ``error``, or pending until
    ``connected`` is set (never set: a hanging server)."""

    name: str
    tools: list[FakeMcpTool] = field(default_factory=list)
    error: str | None = None
    connected: asyncio.Event | None = None
    retry_in_s: float = 30.0


@dataclass
class _Process:
    id: str
    command: str
    started_at: datetime
    listed: bool
    output: str
    exit_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def finish(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self.done.set()


def _failed(exc: TetherError) -> AgentRequestFailed:
    """The error :class:`AgentClient` raises for the agent's answer to ``exc``."""
    return AgentRequestFailed(exc.message, status=exc.http_status, agent_code=exc.code)


def _model(model: type[ModelT], value: Any) -> ModelT:
    """The agent's plain result as the contract's pydantic model (what a client parses)."""
    return model.model_validate(asdict(value))


class FakeAgent:
    """One fake workspace agent rooted at ``home`` (working directory: ``directory``)."""

    def __init__(
        self,
        home: Path,
        directory: Path | None = None,
        *,
        address: str = "fake-agent",
        mcp_connect_timeout_s: float = MCP_CONNECT_TIMEOUT_S,
    ) -> None:
        self.home = home
        self.directory = directory or home
        self.address = address
        self.mcp_connect_timeout_s = mcp_connect_timeout_s
        self.commands: dict[str, FakeCommand] = {}
        self.mcp_servers: list[FakeMcpServer] = []
        self.stopped = False
        self._procs: dict[str, _Process] = {}
        self._mcp_started: dict[str, float] = {}
        self._started = time.monotonic()
        self.calls: list[str] = []  # the API methods called, in order

    # --- scripting --------------------------------------------------------------------------

    def script(
        self, command: str, output: str = "", exit_code: int = 0, runs_s: float | None = 0.0
    ) -> None:
        self.commands[command] = FakeCommand(output, exit_code, runs_s)

    def set_mcp_servers(self, *servers: FakeMcpServer) -> None:
        """Replace the MCP configuration (like editing ``.mcp.json``)."""
        self.mcp_servers = list(servers)
        self._mcp_started = {}

    async def stop(self) -> None:
        """The agent goes away: running commands die, every later call is a transport error."""
        self.stopped = True
        for proc in self._procs.values():
            if proc.task is not None:
                proc.task.cancel()
            proc.finish(SIGNAL_EXIT["kill"])

    # --- plumbing ---------------------------------------------------------------------------

    async def _call(self, name: str, work: Callable[[], Awaitable[T]]) -> T:
        await asyncio.sleep(0)  # a request is never synchronous
        if self.stopped:
            raise AgentTransportError(
                f"agent at {self.address}: ConnectError: connection refused", sent=False
            )
        self.calls.append(name)
        try:
            return await work()
        except TetherError as exc:
            if isinstance(exc, AgentRequestFailed | AgentTransportError):
                raise
            raise _failed(exc) from None
        except PermissionError as exc:
            raise AgentRequestFailed(
                f"permission denied: {exc.filename or exc}", status=403, agent_code="forbidden"
            ) from None
        except OSError as exc:
            raise AgentRequestFailed(str(exc), status=400, agent_code="io_error") from None

    def resolve(self, path: str) -> Path:
        """A request path: absolute, ``~``-relative, or relative to the working directory."""
        return resolve_path(self.home, self.directory, path)

    # --- API ----------------------------------------------------------------------------------

    async def health(self, *, timeout: float | None = None) -> Health:
        async def work() -> Health:
            return Health(status="ok", lifecycle="ready", uptime_s=time.monotonic() - self._started)

        return await self._call("health", work)

    @overload
    async def exec(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        workdir: str | None = None,
        background: Literal[False] = False,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult: ...

    @overload
    async def exec(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        workdir: str | None = None,
        background: Literal[True],
        env: Mapping[str, str] | None = None,
    ) -> BackgroundStarted: ...

    async def exec(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        workdir: str | None = None,
        background: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult | BackgroundStarted:
        async def work() -> ExecResult | BackgroundStarted:
            body = wire.ExecRequest.parse(
                {
                    "command": command,
                    "timeout_s": timeout_s,
                    "workdir": workdir,
                    "background": background,
                    "env": dict(env or {}),
                },
            )
            cwd = self.resolve(body.workdir) if body.workdir else self.directory
            if not cwd.is_dir():
                raise InvalidInput(f"workdir does not exist: {cwd}", field="workdir")
            proc = self._spawn(body.command, listed=body.background)
            if body.background:
                return BackgroundStarted(process_id=proc.id)
            return await self._foreground(proc, body.timeout_s or EXEC_DEFAULT_TIMEOUT_S)

        return await self._call("exec", work)

    def _spawn(self, command: str, *, listed: bool) -> _Process:
        scripted = self.commands.get(command)
        if scripted is None:
            word = shlex.split(command)[0] if command.strip() else command
            scripted = FakeCommand(f"bash: line 1: {word}: command not found\n", 127)
        proc = _Process(
            id=secrets.token_hex(6),
            command=command,
            started_at=datetime.now(UTC),
            listed=listed,
            output=scripted.output,
        )
        self._procs[proc.id] = proc
        if scripted.runs_s == 0:
            proc.finish(scripted.exit_code)
        elif scripted.runs_s is not None:
            proc.task = asyncio.create_task(self._run_for(proc, scripted))
        return proc

    @staticmethod
    async def _run_for(proc: _Process, scripted: FakeCommand) -> None:
        assert scripted.runs_s is not None
        await asyncio.sleep(scripted.runs_s)
        proc.finish(scripted.exit_code)

    async def _foreground(self, proc: _Process, timeout_s: float) -> ExecResult:
        start = time.monotonic()
        try:
            await asyncio.wait_for(proc.done.wait(), timeout_s)
            timed_out = False
        except TimeoutError:
            timed_out = True
            if proc.task is not None:
                proc.task.cancel()
            proc.finish(SIGNAL_EXIT["kill"])
        code = proc.exit_code if proc.exit_code is not None else -1
        return ExecResult(
            exit_code=-1 if timed_out else code,
            output=proc.output,
            truncated=False,
            wall_ms=int((time.monotonic() - start) * 1000),
            timed_out=timed_out,
            error=f"command timed out after {timeout_s:g}s" if timed_out else None,
            process_id=proc.id,
        )

    def _get(self, pid: str) -> _Process:
        proc = self._procs.get(pid)
        if proc is None:
            raise NotFound(f"no process with id {pid!r}")
        return proc

    async def process_list(self) -> ProcessList:
        async def work() -> ProcessList:
            procs = sorted(self._procs.values(), key=lambda p: p.started_at)
            return ProcessList(
                processes=[
                    ProcessInfo(
                        process_id=p.id,
                        command=p.command,
                        running=p.running,
                        exit_code=p.exit_code,
                        started_at=p.started_at,
                    )
                    for p in procs
                    if p.listed
                ]
            )

        return await self._call("process_list", work)

    async def process_output(self, pid: str) -> ProcessOutput:
        async def work() -> ProcessOutput:
            proc = self._get(pid)
            return ProcessOutput(
                process_id=proc.id,
                running=proc.running,
                exit_code=proc.exit_code,
                output=proc.output,
                truncated=False,
            )

        return await self._call("process_output", work)

    async def process_signal(self, pid: str, signal: str) -> SignalResult:
        async def work() -> SignalResult:
            proc = self._get(pid)  # 404 before 400, as the agent does
            body = wire.SignalRequest.parse({"signal": signal})
            if not proc.running:
                message = f"process {proc.id} has already exited"
            else:
                if proc.task is not None:
                    proc.task.cancel()
                proc.finish(SIGNAL_EXIT[body.signal])
                message = f"sent {body.signal} to process {proc.id}"
            return SignalResult(process_id=pid, signal=body.signal, message=message)

        return await self._call("process_signal", work)

    async def read_file(self, path: str, offset: int = 1, limit: int = 2000) -> ReadFileResult:
        async def work() -> ReadFileResult:
            body = wire.ReadFileRequest.parse({"path": path, "offset": offset, "limit": limit})
            target = self.resolve(body.path)
            return _model(
                ReadFileResult, files.read_file(target, offset=body.offset, limit=body.limit)
            )

        return await self._call("read_file", work)

    async def write_file(self, path: str, content: str) -> WriteFileResult:
        async def work() -> WriteFileResult:
            body = wire.WriteFileRequest.parse({"path": path, "content": content})
            return _model(WriteFileResult, files.write_file(self.resolve(body.path), body.content))

        return await self._call("write_file", work)

    async def edit_files(self, specs: Sequence[FileEdits | Mapping[str, Any]]) -> EditResult:
        async def work() -> EditResult:
            payload = [s.model_dump() if isinstance(s, FileEdits) else dict(s) for s in specs]
            body = wire.EditRequest.parse({"files": payload})
            results = []
            for spec in body.files:
                target = self.resolve(spec.path)
                edits = [wire.Edit(search=e.search, replace=e.replace) for e in spec.edits]
                results.append(files.edit_file(target, wire.FileEdits(spec.path, edits)))
            return _model(EditResult, wire.EditResult(files=results))

        return await self._call("edit_files", work)

    async def list_dir(self, path: str = ".") -> ListDirResult:
        async def work() -> ListDirResult:
            body = wire.ListDirRequest.parse({"path": path})
            return _model(ListDirResult, files.list_dir(self.resolve(body.path)))

        return await self._call("list_dir", work)

    async def instructions(self) -> Instructions:
        async def work() -> Instructions:
            found = find_instruction_files(self.home, self.directory)
            skills = find_skills(self.directory)
            return _model(
                Instructions,
                wire.Instructions(
                    os="linux", directory=str(self.directory), files=found, skills=skills
                ),
            )

        return await self._call("instructions", work)

    async def mcp_tools(
        self, *, timeout: float | None = None, wait: float | None = None
    ) -> McpToolList:
        async def work() -> McpToolList:
            if wait is not None and not 0 <= wait <= 600:
                raise InvalidInput("wait must be between 0 and 600", field="wait")
            await self._wait_for_servers(self.mcp_connect_timeout_s + 1.0 if wait is None else wait)
            return self._listing()

        return await self._call("mcp_tools", work)

    async def _wait_for_servers(self, bound: float) -> None:
        """Wait for pending servers, each until ``bound`` after its first attempt."""
        now = asyncio.get_running_loop().time()
        waits: dict[asyncio.Task[bool], float] = {}
        for server in self.mcp_servers:
            if server.error is not None or server.connected is None or server.connected.is_set():
                continue
            started = self._mcp_started.setdefault(server.name, now)
            left = started + bound - now
            if left > 0:
                waits[asyncio.ensure_future(server.connected.wait())] = left
        if not waits:
            return
        try:
            await asyncio.wait(set(waits), timeout=max(waits.values()))
        finally:
            for task in waits:
                task.cancel()

    def _listing(self) -> McpToolList:
        tools: list[McpTool] = []
        servers: list[McpServerStatus] = []
        for server in self.mcp_servers:
            if server.error is not None:
                servers.append(
                    McpServerStatus(
                        name=server.name,
                        status="error",
                        error=server.error,
                        retry_in_s=server.retry_in_s,
                    )
                )
                continue
            if server.connected is not None and not server.connected.is_set():
                servers.append(McpServerStatus(name=server.name, status="pending"))
                continue
            servers.append(McpServerStatus(name=server.name, status="ok"))
            tools.extend(
                McpTool(
                    name=f"{server.name}{TOOL_SEPARATOR}{tool.name}",
                    server=server.name,
                    tool=tool.name,
                    description=tool.description,
                    input_schema=dict(tool.input_schema),
                )
                for tool in server.tools
            )
        return McpToolList(tools=tools, servers=servers)

    async def mcp_call(self, name: str, arguments: Mapping[str, Any]) -> McpCallResult:
        async def work() -> McpCallResult:
            body = wire.McpCallRequest.parse({"name": name, "arguments": dict(arguments)})
            found = self._route(body.name)
            owner = self._connecting_owner(body.name) if found is None else None
            if owner is not None:
                # A tool of a server still connecting (the agent restarted): wait for that
                # server only, within its connect bound, as the agent does.
                assert owner.connected is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(owner.connected.wait(), self.mcp_connect_timeout_s + 1.0)
                found = self._route(body.name)
            if found is None:
                raise NotFound(f"unknown MCP tool {body.name!r}")
            try:
                text = found.handler(body.arguments) if found.handler else ""
                if not isinstance(text, str):
                    text = await text
            except Exception as exc:
                error = McpContent(type="text", text=str(exc))
                return McpCallResult(content=[error], is_error=True)
            return McpCallResult(content=[McpContent(type="text", text=text)], is_error=False)

        return await self._call("mcp_call", work)

    def _connecting_owner(self, name: str) -> FakeMcpServer | None:
        for server in self.mcp_servers:
            pending = server.connected is not None and not server.connected.is_set()
            if pending and server.error is None and name.startswith(server.name + TOOL_SEPARATOR):
                return server
        return None

    def _route(self, name: str) -> FakeMcpTool | None:
        listing = self._listing()
        if name not in {t.name for t in listing.tools}:
            return None
        server_name, _, tool_name = name.partition(TOOL_SEPARATOR)
        server = next(s for s in self.mcp_servers if s.name == server_name)
        return next(t for t in server.tools if t.name == tool_name)

    async def aclose(self) -> None:
        return None
