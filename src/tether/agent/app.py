"""The agent's HTTP API (Starlette): exec, processes, files, instructions, MCP, health.

Every request needs ``Authorization: Bearer <dial secret>``. Errors are JSON
``{"code", "message"}``: tether errors keep their code and status, invalid bodies are 400
``invalid_input``, unknown routes 404 ``not_found``, anything unexpected 500 ``internal``.
Blocking work (disk) runs in worker threads; processes are asyncio subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import secrets
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.agent import files
from tether.agent.execstream import exec_stream_response
from tether.agent.instructions import find_instruction_files
from tether.agent.mcphost import McpHost
from tether.agent.processes import ProcessManager
from tether.agent.schemas import (
    EXEC_DEFAULT_TIMEOUT_S,
    BackgroundStarted,
    EditRequest,
    EditResult,
    ExecRequest,
    Health,
    Instructions,
    ListDirRequest,
    McpCallRequest,
    ProcessList,
    ReadFileRequest,
    SignalRequest,
    SignalResult,
    WriteFileRequest,
)
from tether.agent.skills import find_skills
from tether.agent.state import AgentState
from tether.errors import InvalidInput, TetherError

log = logging.getLogger("tether.agent")

BodyT = TypeVar("BodyT", bound=BaseModel)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


class _AuthAndLog:
    """Pure ASGI middleware: reject requests without the dial secret; log chat ids."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self._app = app
        self._expected = f"Bearer {secret}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        if not secrets.compare_digest(auth, self._expected):
            response = _error(401, "unauthorized", "missing or wrong agent secret")
            await response(scope, receive, send)
            return
        chat = headers.get(b"x-tether-chat-id")
        ancestors = headers.get(b"x-tether-ancestor-chat-ids")
        if chat is not None or ancestors is not None:
            log.info(
                "%s %s chat=%s ancestors=%s",
                scope["method"],
                scope["path"],
                (chat or b"").decode("latin-1"),
                (ancestors or b"").decode("latin-1"),
            )
        else:
            log.debug("%s %s", scope["method"], scope["path"])
        await self._app(scope, receive, send)


MAX_MCP_WAIT_S = 600.0


def _wait_param(request: Request) -> float | None:
    """``?wait=<seconds>``: how long an MCP listing may wait for connecting servers."""
    raw = request.query_params.get("wait")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(
            f"wait must be a number of seconds, got {raw[:40]!r}", field="wait"
        ) from None
    if not 0 <= value <= MAX_MCP_WAIT_S:  # also rejects nan and inf
        raise InvalidInput(f"wait must be between 0 and {MAX_MCP_WAIT_S:g}", field="wait")
    return value


async def _body(request: Request, model: type[BodyT]) -> BodyT:
    raw = await request.body()
    try:
        data: Any = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InvalidInput(f"{where or 'body'}: {first.get('msg')}", field=where) from None


def _json(model: BaseModel) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"))


class AgentApi:
    """The route handlers, bound to the agent's state, processes and MCP host."""

    def __init__(self, state: AgentState, processes: ProcessManager, mcp: McpHost) -> None:
        self.state = state
        self.processes = processes
        self.mcp = mcp

    async def health(self, request: Request) -> Response:
        return _json(
            Health(
                status="ok", lifecycle=self.state.lifecycle.value, uptime_s=self.state.uptime_s()
            )
        )

    async def _workdir(self, workdir: str | None) -> Path:
        path = self.state.resolve(workdir) if workdir else self.state.directory
        if not await asyncio.to_thread(path.is_dir):
            raise InvalidInput(f"workdir does not exist: {path}", field="workdir")
        return path

    async def exec(self, request: Request) -> Response:
        body = await _body(request, ExecRequest)
        cwd = await self._workdir(body.workdir)
        if body.background:
            proc = await self.processes.spawn(body.command, cwd=cwd, env=body.env)
            return _json(BackgroundStarted(process_id=proc.id))
        timeout = body.timeout_s if body.timeout_s is not None else EXEC_DEFAULT_TIMEOUT_S
        if body.stream:
            return await exec_stream_response(
                self.processes, body.command, timeout_s=timeout, cwd=cwd, env=body.env
            )
        result = await self.processes.run(body.command, timeout_s=timeout, cwd=cwd, env=body.env)
        return _json(result)

    async def process_list(self, request: Request) -> Response:
        return _json(ProcessList(processes=self.processes.list()))

    async def process_output(self, request: Request) -> Response:
        return _json(self.processes.output(request.path_params["pid"]))

    async def process_signal(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        self.processes.get(pid)  # 404 before 400, an unknown process is the bigger mistake
        body = await _body(request, SignalRequest)
        message = self.processes.signal(pid, body.signal)
        return _json(SignalResult(process_id=pid, signal=body.signal, message=message))

    async def read_file(self, request: Request) -> Response:
        body = await _body(request, ReadFileRequest)
        path = self.state.resolve(body.path)
        return _json(
            await asyncio.to_thread(files.read_file, path, offset=body.offset, limit=body.limit)
        )

    async def write_file(self, request: Request) -> Response:
        body = await _body(request, WriteFileRequest)
        path = self.state.resolve(body.path)
        return _json(await asyncio.to_thread(files.write_file, path, body.content))

    async def edit_files(self, request: Request) -> Response:
        body = await _body(request, EditRequest)
        results = []
        for spec in body.files:
            path = self.state.resolve(spec.path)
            results.append(await asyncio.to_thread(files.edit_file, path, spec))
        return _json(EditResult(files=results))

    async def list_dir(self, request: Request) -> Response:
        body = await _body(request, ListDirRequest)
        path = self.state.resolve(body.path)
        return _json(await asyncio.to_thread(files.list_dir, path))

    async def instructions(self, request: Request) -> Response:
        found = await asyncio.to_thread(
            find_instruction_files, self.state.home, self.state.directory
        )
        skills = await asyncio.to_thread(find_skills, self.state.directory)
        return _json(
            Instructions(
                os=platform.system().lower(),
                directory=str(self.state.directory),
                files=found,
                skills=skills,
            )
        )

    async def mcp_tools(self, request: Request) -> Response:
        return _json(await self.mcp.list_tools(wait_s=_wait_param(request)))

    async def mcp_call(self, request: Request) -> Response:
        body = await _body(request, McpCallRequest)
        return _json(await self.mcp.call(body.name, body.arguments))


async def _tether_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TetherError)
    return _error(exc.http_status, exc.code, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return _error(exc.status_code, code, str(exc.detail))


async def _os_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OSError)
    if isinstance(exc, PermissionError):
        return _error(403, "forbidden", f"permission denied: {exc.filename or exc}")
    return _error(400, "io_error", str(exc))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this response, so the server logs the traceback once.
    return _error(500, "internal", f"{type(exc).__name__}: {exc}")


def build_app(api: AgentApi, secret: str) -> ASGIApp:
    """The ASGI app: routes behind the secret check."""
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/exec", api.exec, methods=["POST"]),
        Route("/processes", api.process_list, methods=["GET"]),
        Route("/processes/{pid}/output", api.process_output, methods=["GET"]),
        Route("/processes/{pid}/signal", api.process_signal, methods=["POST"]),
        Route("/files/read", api.read_file, methods=["POST"]),
        Route("/files/write", api.write_file, methods=["POST"]),
        Route("/files/edit", api.edit_files, methods=["POST"]),
        Route("/files/list", api.list_dir, methods=["POST"]),
        Route("/instructions", api.instructions, methods=["GET"]),
        Route("/mcp/tools", api.mcp_tools, methods=["GET"]),
        Route("/mcp/call", api.mcp_call, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            TetherError: _tether_error,
            HTTPException: _http_error,
            OSError: _os_error,
            Exception: _unexpected,
        },
    )
    return _AuthAndLog(app, secret)
