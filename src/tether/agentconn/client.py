"""The server-side HTTP client of one workspace agent.

One :class:`AgentClient` wraps one keep-alive ``httpx.AsyncClient`` to ``http://<address>``
(or the unix socket of a ``unix:<path>`` address, as the local backend decides) and
sends the dial secret on every request. Failures are typed:

* the agent could not be reached or stopped answering (connect refused or timed out, read
  error or timeout, broken protocol) → :class:`tether.errors.AgentTransportError`;
* the agent answered with an error status → :class:`tether.errors.AgentRequestFailed` with
  ``status`` and the agent's ``agent_code`` (``"unauthorized"`` for a wrong secret);
* the agent's session went silent while a request was in flight (``down`` is set, see
  :mod:`tether.agentconn.liveness`) → :class:`tether.errors.AgentUnreachable` at once.

No request waits longer than its own deadline: a foreground exec gets its command timeout
plus ``exec_margin``, every other request ``request_timeout``. A foreground exec streams the
command's output as it runs (NDJSON, :mod:`tether.agentconn.execstream`), so a call that ends
early still carries what was received (``partial_output``) and the ``process_id`` to read it
again once the agent is back.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel, ValidationError

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
    McpToolList,
    ProcessList,
    ProcessOutput,
    ReadFileResult,
    SignalResult,
    WriteFileResult,
)
from tether.agentconn.execstream import ExecStream, exec_interrupted
from tether.agentconn.transport import AgentTransport
from tether.errors import AgentError, AgentRequestFailed, AgentTransportError, AgentUnreachable

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

UNREACHABLE_MESSAGE = "the workspace agent stopped answering (its session went silent)"

CHAT_ID_HEADER = "X-Tether-Chat-Id"
ANCESTOR_CHAT_IDS_HEADER = "X-Tether-Ancestor-Chat-Ids"


class AgentClient:
    """Typed calls to one agent's HTTP API. Close it with :meth:`aclose`."""

    def __init__(
        self,
        address: str,
        secret: str,
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float,
        request_timeout: float,
        exec_margin: float = 5.0,
        down: asyncio.Event | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.address = address
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._exec_margin = exec_margin
        self._down = down
        self._extra_headers: dict[str, str] = dict(headers or {})
        # Set on a handle made by :meth:`share`: closing it gives the connections back.
        self._release: Callable[[], Awaitable[None]] | None = None
        uds = address.removeprefix("unix:") if address.startswith("unix:") else None
        self._http = httpx.AsyncClient(
            base_url="http://agent" if uds else f"http://{address}",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
            # Agents speak plain HTTP/1.1 (``http://`` is fixed above): a lean transport
            # (tether.agentconn.transport), not httpcore's pool on anyio.
            transport=transport or AgentTransport(address),
            trust_env=False,  # an agent on 127.0.0.1 must never be reached through a proxy
        )
        self._urls: dict[str, httpx.URL] = {}

    # --- headers --------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        """Extra headers sent with every request (e.g. the chat ids); assign to replace."""
        return dict(self._extra_headers)

    @headers.setter
    def headers(self, value: Mapping[str, str]) -> None:
        self._extra_headers = dict(value)

    def set_chat(self, chat_id: str | None, ancestor_ids: Sequence[str] = ()) -> None:
        """Tag following requests with the chat (and its ancestors) they are made for."""
        headers = {
            k: v
            for k, v in self._extra_headers.items()
            if k not in (CHAT_ID_HEADER, ANCESTOR_CHAT_IDS_HEADER)
        }
        if chat_id is not None:
            headers[CHAT_ID_HEADER] = chat_id
        if ancestor_ids:
            headers[ANCESTOR_CHAT_IDS_HEADER] = ",".join(ancestor_ids)
        self._extra_headers = headers

    # --- plumbing ---------------------------------------------------------------------------

    def _url(self, path: str) -> httpx.URL:
        """``path`` on the agent as an absolute URL, parsed once per client (and shared by
        its handles): httpx parses a relative path and then the merged URL again on every
        request (two URL parses of a turn's exec, issue #12). The API's fixed paths are
        kept; a path naming a process (``/processes/{pid}/…``) is parsed each time."""
        url = self._urls.get(path)
        if url is None:
            url = self._http.build_request("GET", path).url
            if not path.startswith("/processes/"):
                self._urls[path] = url
        return url

    async def _request(
        self,
        method: str,
        path: str,
        model: type[ModelT],
        *,
        json: Any = None,
        read_timeout: float | None = None,
        params: dict[str, str] | None = None,
    ) -> ModelT:
        timeout: httpx.Timeout | None = None
        if read_timeout is not None:
            timeout = httpx.Timeout(read_timeout, connect=self._connect_timeout)
        try:
            response = await self._guard(
                self._http.request(
                    method,
                    self._url(path),
                    json=json,
                    params=params,
                    headers=self._extra_headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise _request_failed(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise AgentError(f"agent at {self.address} sent an unexpected body for {path}") from exc

    def _transport_error(self, exc: httpx.TransportError) -> AgentTransportError:
        return AgentTransportError(
            f"agent at {self.address}: {type(exc).__name__}: {exc}".rstrip(": "),
            sent=not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
        )

    @property
    def is_down(self) -> bool:
        """The agent's session went silent since this client was made."""
        return self._down is not None and self._down.is_set()

    async def _guard(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless the agent goes down first: then cancel it and raise
        :class:`AgentUnreachable` at once (the request's own deadline still applies)."""
        down = self._down
        if down is None:
            return await aw
        task = asyncio.ensure_future(aw)
        if down.is_set():
            task.cancel()
            raise AgentUnreachable(UNREACHABLE_MESSAGE)
        waiter = asyncio.ensure_future(down.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()  # cancelled caller or a down agent: the request is abandoned
                task.add_done_callback(_consume)
        if task.done() and not task.cancelled():
            return task.result()  # finished first (a result that is ready wins)
        raise AgentUnreachable(UNREACHABLE_MESSAGE)

    # --- API ----------------------------------------------------------------------------------

    async def health(self, *, timeout: float | None = None) -> Health:
        return await self._request("GET", "/health", Health, read_timeout=timeout)

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

    @overload
    async def exec(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        workdir: str | None = None,
        background: bool,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult | BackgroundStarted: ...

    async def exec(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        workdir: str | None = None,
        background: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult | BackgroundStarted:
        """Run a command. A foreground command streams its output and is bounded by its
        timeout plus ``exec_margin``; when it ends early (agent down, stream broken, deadline)
        the error carries ``partial_output`` and ``process_id`` (see the module docstring)."""
        body: dict[str, Any] = {
            "command": command,
            "timeout_s": timeout_s,
            "workdir": workdir,
            "background": background,
            "env": dict(env or {}),
        }
        if background:
            return await self._request("POST", "/exec", BackgroundStarted, json=body)
        body["stream"] = True
        wait = timeout_s if timeout_s is not None else EXEC_DEFAULT_TIMEOUT_S
        deadline = wait + self._exec_margin
        stream = ExecStream()
        try:
            async with asyncio.timeout(deadline + self._connect_timeout):
                return await self._guard(self._exec_stream(body, deadline, stream))
        except AgentUnreachable as exc:
            raise exec_interrupted(AgentUnreachable(exc.message), stream) from exc
        except TimeoutError as exc:
            err = AgentTransportError(
                f"agent at {self.address} did not finish the command within its deadline "
                f"({deadline:g}s)"
            )
            raise exec_interrupted(err, stream) from exc
        except httpx.TransportError as exc:
            raise exec_interrupted(self._transport_error(exc), stream) from exc

    async def _exec_stream(
        self, body: dict[str, Any], deadline: float, stream: ExecStream
    ) -> ExecResult:
        async with self._http.stream(
            "POST",
            self._url("/exec"),
            json=body,
            headers=self._extra_headers,
            timeout=httpx.Timeout(deadline, connect=self._connect_timeout),
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _request_failed(response)
            lines = response.aiter_lines()
            async for line in lines:
                result = stream.feed(line)
                if result is not None:
                    await self._read_to_end(lines)
                    return result
        raise AgentTransportError(
            f"agent at {self.address} ended the command's output stream without a result"
        )

    async def _read_to_end(self, lines: AsyncIterator[str]) -> None:
        """Read the end of an exec stream, which follows its result line at once. A stream
        read to its end leaves its connection kept alive for the next request and its
        generators finished; one left unread costs a closed connection, a new connect and
        a garbage-collector finalizer task per generator (issue #12). Bounded by the
        connect timeout: after that (or lines past the result, or a broken end) the result
        stands and the connection is closed, as before."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                async for _ in lines:
                    return  # a line after the result: not the protocol; drop the connection
        except (TimeoutError, httpx.TransportError):
            return

    async def process_list(self) -> ProcessList:
        return await self._request("GET", "/processes", ProcessList)

    async def process_output(self, pid: str) -> ProcessOutput:
        return await self._request("GET", f"/processes/{pid}/output", ProcessOutput)

    async def process_signal(self, pid: str, signal: str) -> SignalResult:
        """``signal`` is ``"terminate"`` or ``"kill"``; others are refused with 400."""
        return await self._request(
            "POST", f"/processes/{pid}/signal", SignalResult, json={"signal": signal}
        )

    async def read_file(self, path: str, offset: int = 1, limit: int = 2000) -> ReadFileResult:
        return await self._request(
            "POST",
            "/files/read",
            ReadFileResult,
            json={"path": path, "offset": offset, "limit": limit},
        )

    async def write_file(self, path: str, content: str) -> WriteFileResult:
        return await self._request(
            "POST", "/files/write", WriteFileResult, json={"path": path, "content": content}
        )

    async def edit_files(self, files: Sequence[FileEdits | Mapping[str, Any]]) -> EditResult:
        """Each file: ``{path, edits: [{search, replace}]}``; per-file outcomes come back."""
        payload = [f.model_dump() if isinstance(f, FileEdits) else dict(f) for f in files]
        return await self._request("POST", "/files/edit", EditResult, json={"files": payload})

    async def list_dir(self, path: str = ".") -> ListDirResult:
        return await self._request("POST", "/files/list", ListDirResult, json={"path": path})

    async def instructions(self) -> Instructions:
        return await self._request("GET", "/instructions", Instructions)

    async def mcp_tools(
        self, *, timeout: float | None = None, wait: float | None = None
    ) -> McpToolList:
        """The workspace's MCP tools; ``wait`` bounds how long the agent waits for servers
        still connecting (they are reported ``pending``), default: its connect bound."""
        params = {"wait": f"{wait:g}"} if wait is not None else None
        return await self._request(
            "GET", "/mcp/tools", McpToolList, read_timeout=timeout, params=params
        )

    async def mcp_call(self, name: str, arguments: Mapping[str, Any]) -> McpCallResult:
        return await self._request(
            "POST", "/mcp/call", McpCallResult, json={"name": name, "arguments": dict(arguments)}
        )

    def share(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        release: Callable[[], Awaitable[None]],
    ) -> AgentClient:
        """Another handle on this client's connections and liveness signal, with its own
        extra ``headers``. Its :meth:`aclose` awaits ``release`` (once) instead of closing
        the connections, which the owner of this client closes
        (:mod:`tether.agentconn.clients`)."""
        handle = copy.copy(self)  # same httpx client, timeouts and down event
        handle._extra_headers = dict(headers or {})
        handle._release = release
        return handle

    async def aclose(self) -> None:
        """Close the connections (a handle from :meth:`share`: give them back, once)."""
        if self._release is None:
            await self._http.aclose()
            return
        release, self._release = self._release, _released
        await release()

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _released() -> None:
    """A shared handle closed twice: the second close has nothing to give back."""


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned request's outcome, so it is not logged as never retrieved."""
    if not task.cancelled():
        task.exception()


def _request_failed(response: httpx.Response) -> AgentRequestFailed:
    code, message = "error", ""
    try:
        body = response.json()
        if isinstance(body, dict):
            code = str(body.get("code") or code)
            message = str(body.get("message") or "")
    except ValueError:
        message = response.text[:500]
    if not message:
        message = f"agent answered HTTP {response.status_code}"
    return AgentRequestFailed(message, status=response.status_code, agent_code=code)
