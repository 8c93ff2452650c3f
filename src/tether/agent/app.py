"""The agent's HTTP API: exec, processes, files, instructions, MCP, health.

Served by :mod:`tether.agent.http`. Every request needs ``Authorization: Bearer <dial
secret>``. Errors are JSON ``{"code", "message"}``: tether errors keep their code and status,
invalid bodies are 400 ``invalid_input``, unknown routes 404 ``not_found``, a known route with
another method 405 ``method_not_allowed``, anything unexpected 500 ``internal``. Bodies are
checked by :mod:`tether.agent.wire` (the same fields as :mod:`tether.agent.schemas`). Blocking
work (disk) runs in worker threads; commands are children the event loop watches
(:mod:`tether.agent.child`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from hmac import compare_digest
from pathlib import Path
from typing import Any

from tether.agent import files
from tether.agent.execstream import exec_stream_response
from tether.agent.http import Handler, Request, Response, error_response
from tether.agent.instructions import find_instruction_files
from tether.agent.mcphost import McpHost
from tether.agent.processes import ProcessManager
from tether.agent.skills import find_skills
from tether.agent.state import AgentState
from tether.agent.wire import (
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
    dump,
    parse_json,
)
from tether.errors import InvalidInput, TetherError

log = logging.getLogger("tether.agent")

MAX_MCP_WAIT_S = 600.0


def _wait_param(request: Request) -> float | None:
    """``?wait=<seconds>``: how long an MCP listing may wait for connecting servers."""
    raw = request.query.get("wait")
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


def _json(value: Any) -> Response:
    return Response(200, dump(value))


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

    def _workdir(self, workdir: str | None) -> Path:
        path = self.state.resolve(workdir) if workdir else self.state.directory
        # One stat, on the loop: a worker-thread hop here cost every command a thread
        # handoff (a scheduler wait on a busy machine), and the spawn that follows changes
        # into this same directory while the loop waits for it anyway.
        if not os.path.isdir(path):
            raise InvalidInput(f"workdir does not exist: {path}", field="workdir")
        return path

    async def exec(self, request: Request) -> Response:
        body = ExecRequest.parse(parse_json(request.body))
        cwd = self._workdir(body.workdir)
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
        body = SignalRequest.parse(parse_json(request.body))
        message = self.processes.signal(pid, body.signal)
        return _json(SignalResult(process_id=pid, signal=body.signal, message=message))

    async def read_file(self, request: Request) -> Response:
        body = ReadFileRequest.parse(parse_json(request.body))
        path = self.state.resolve(body.path)
        return _json(
            await asyncio.to_thread(files.read_file, path, offset=body.offset, limit=body.limit)
        )

    async def write_file(self, request: Request) -> Response:
        body = WriteFileRequest.parse(parse_json(request.body))
        path = self.state.resolve(body.path)
        return _json(await asyncio.to_thread(files.write_file, path, body.content))

    async def edit_files(self, request: Request) -> Response:
        body = EditRequest.parse(parse_json(request.body))
        results = []
        for spec in body.files:
            path = self.state.resolve(spec.path)
            results.append(await asyncio.to_thread(files.edit_file, path, spec))
        return _json(EditResult(files=results))

    async def list_dir(self, request: Request) -> Response:
        body = ListDirRequest.parse(parse_json(request.body))
        path = self.state.resolve(body.path)
        return _json(await asyncio.to_thread(files.list_dir, path))

    async def instructions(self, request: Request) -> Response:
        found = await asyncio.to_thread(
            find_instruction_files, self.state.home, self.state.directory
        )
        skills = await asyncio.to_thread(find_skills, self.state.directory)
        return _json(
            Instructions(
                os=os.uname().sysname.lower(),
                directory=str(self.state.directory),
                files=found,
                skills=skills,
            )
        )

    async def mcp_tools(self, request: Request) -> Response:
        return _json(await self.mcp.list_tools(wait_s=_wait_param(request)))

    async def mcp_call(self, request: Request) -> Response:
        body = McpCallRequest.parse(parse_json(request.body))
        return _json(await self.mcp.call(body.name, body.arguments))


_Route = Callable[[Request], Awaitable[Response]]
_PROCESS_ROUTE = re.compile(r"/processes/([^/]+)/(output|signal)")


def build_app(api: AgentApi, secret: str) -> Handler:
    """The request handler: the secret check, then the routes."""
    expected = f"Bearer {secret}".encode()
    routes: dict[str, dict[str, _Route]] = {
        "/health": {"GET": api.health},
        "/exec": {"POST": api.exec},
        "/processes": {"GET": api.process_list},
        "/files/read": {"POST": api.read_file},
        "/files/write": {"POST": api.write_file},
        "/files/edit": {"POST": api.edit_files},
        "/files/list": {"POST": api.list_dir},
        "/instructions": {"GET": api.instructions},
        "/mcp/tools": {"GET": api.mcp_tools},
        "/mcp/call": {"POST": api.mcp_call},
    }
    process_routes: dict[str, dict[str, _Route]] = {
        "output": {"GET": api.process_output},
        "signal": {"POST": api.process_signal},
    }

    def route(request: Request) -> dict[str, _Route] | None:
        found = routes.get(request.path)
        if found is not None:
            return found
        match = _PROCESS_ROUTE.fullmatch(request.path)
        if match is None:
            return None
        request.path_params["pid"] = match.group(1)
        return process_routes[match.group(2)]

    async def handle(request: Request) -> Response:
        auth = request.headers.get("authorization", "").encode("latin-1")
        if not compare_digest(auth, expected):
            return error_response(401, "unauthorized", "missing or wrong agent secret")
        chat = request.headers.get("x-tether-chat-id")
        ancestors = request.headers.get("x-tether-ancestor-chat-ids")
        if chat is not None or ancestors is not None:
            log.info(
                "%s %s chat=%s ancestors=%s",
                request.method,
                request.path,
                chat or "",
                ancestors or "",
            )
        else:
            log.debug("%s %s", request.method, request.path)
        methods = route(request)
        if methods is None:
            return error_response(404, "not_found", "Not Found")
        method = "GET" if request.method == "HEAD" else request.method
        endpoint = methods.get(method)
        if endpoint is None:
            return error_response(405, "method_not_allowed", "Method Not Allowed")
        try:
            return await endpoint(request)
        except TetherError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        except PermissionError as exc:
            return error_response(403, "forbidden", f"permission denied: {exc.filename or exc}")
        except OSError as exc:
            return error_response(400, "io_error", str(exc))
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            return error_response(500, "internal", f"{type(exc).__name__}: {exc}")

    return handle
