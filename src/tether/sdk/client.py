"""The async Python client of the tether API.

    async with TetherClient("http://127.0.0.1:7080", token) as client:
        ws = await client.create_workspace("python", "demo")
        build = await client.wait_for_build("demo", ws.latest_build.id, timeout=120)
        result = await client.exec("demo", "echo hi")

Every method raises :class:`~tether.sdk.errors.ApiError` for an error answer (with the server's
``code``, ``message`` and ``details``) and :class:`~tether.sdk.errors.ServerUnreachable` when
no connection can be made. ``ref`` arguments accept a name or an id.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx

from tether.sdk.errors import ApiError, ServerUnreachable, WaitTimeout
from tether.sdk.models import (
    ApiToken,
    BackgroundStarted,
    Build,
    BuildLogs,
    BuildResult,
    ChatConfig,
    CreatedToken,
    DeletedUser,
    ExecResult,
    ModelInfo,
    MyUsage,
    Template,
    UsageLimits,
    User,
    UserWithToken,
    Workspace,
)
from tether.sdk.sse import iter_sse

API = "/api/v1"
# Margin on top of a command's own timeout for the HTTP round trip through server and agent.
EXEC_MARGIN_S = 30.0


def _seg(ref: str) -> str:
    return quote(str(ref), safe="")


class TetherClient:
    """Client of one tether server for one API token. Use as an async context manager (or
    call :meth:`aclose`). ``transport`` lets tests plug an ``httpx.MockTransport`` or
    ``httpx.ASGITransport``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> TetherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- transport ------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method,
                API + path,
                json=json,
                params=params,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.is_error:
            raise _api_error(response.status_code, response.content)
        if not response.content:
            return None
        return response.json()

    def _transport_error(self, exc: httpx.TransportError) -> ApiError:
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(0, "timeout", f"the tether server at {self.url} did not answer in time")
        if isinstance(exc, httpx.ConnectError):
            return ServerUnreachable(self.url, _connect_reason(exc))
        return ServerUnreachable(self.url, str(exc) or type(exc).__name__)

    # --- users ----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._request("GET", "/health")
        return data

    async def signin_link(self) -> str:
        """A one-time web UI sign-in link (valid a few minutes) for this client's user."""
        data = await self._request("POST", "/session/links")
        return self.url.rstrip("/") + str(data["path"])

    async def me(self) -> User:
        return User.model_validate(await self._request("GET", "/users/me"))

    async def create_user(self, name: str, role: str = "member") -> UserWithToken:
        data = await self._request("POST", "/users", json={"name": name, "role": role})
        return UserWithToken.model_validate(data)

    async def list_users(self) -> list[User]:
        return [User.model_validate(u) for u in await self._request("GET", "/users")]

    async def get_user(self, user: str = "me") -> User:
        return User.model_validate(await self._request("GET", f"/users/{_seg(user)}"))

    async def disable_user(self, user: str) -> User:
        """Admins: every token of ``user`` gets 401 at once and their streams end."""
        return User.model_validate(await self._request("POST", f"/users/{_seg(user)}/disable"))

    async def enable_user(self, user: str) -> User:
        return User.model_validate(await self._request("POST", f"/users/{_seg(user)}/enable"))

    async def delete_user(self, user: str, *, data: Literal["keep", "remove"]) -> DeletedUser:
        """Admins: delete ``user``; ``data`` says whether their workspaces and chats are kept
        (workspaces stopped) or removed (workspaces deleted with their files, chats deleted)."""
        path = f"/users/{_seg(user)}"
        return DeletedUser.model_validate(
            await self._request("DELETE", path, params={"data": data})
        )

    async def list_tokens(self, user: str = "me") -> list[ApiToken]:
        data = await self._request("GET", f"/users/{_seg(user)}/tokens")
        return [ApiToken.model_validate(t) for t in data]

    async def create_token(
        self, name: str, *, expires_in_s: float | None = None, user: str = "me"
    ) -> CreatedToken:
        """A new API token; its ``secret`` is in this result only."""
        body: dict[str, Any] = {"name": name, "expires_in_s": expires_in_s}
        data = await self._request("POST", f"/users/{_seg(user)}/tokens", json=body)
        return CreatedToken.model_validate(data)

    async def revoke_token(self, token_id: str | uuid.UUID, *, user: str = "me") -> None:
        await self._request("DELETE", f"/users/{_seg(user)}/tokens/{_seg(str(token_id))}")

    # --- models ---------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo.model_validate(m) for m in await self._request("GET", "/models")]

    async def add_model(self, name: str, provider: str, model: str, **options: Any) -> ModelInfo:
        """Add an admin model. ``options``: base_url, api_key_env (an ``*_API_KEY``
        environment variable of the server), request_timeout_s, connect_timeout_s,
        max_retries, retry_base_s, stream."""
        body = {"name": name, "provider": provider, "model": model, **options}
        return ModelInfo.model_validate(await self._request("POST", "/models", json=body))

    async def edit_model(self, name: str, **changes: Any) -> ModelInfo:
        data = await self._request("PATCH", f"/models/{_seg(name)}", json=changes)
        return ModelInfo.model_validate(data)

    async def remove_model(self, name: str) -> None:
        await self._request("DELETE", f"/models/{_seg(name)}")

    # --- chat settings (admins) -----------------------------------------------------------

    async def chat_config(self) -> ChatConfig:
        return ChatConfig.model_validate(await self._request("GET", "/chat-config"))

    async def set_template_allowlist(self, template_ids: Sequence[str | uuid.UUID]) -> ChatConfig:
        """Limit the templates chats see (CW-24); an empty list allows every template."""
        body = {"template_ids": [str(t) for t in template_ids]}
        data = await self._request("PUT", "/chat-config/template-allowlist", json=body)
        return ChatConfig.model_validate(data)

    async def set_system_prompt(self, prompt: str) -> ChatConfig:
        """Text added to every chat's system prompt ("" removes it)."""
        data = await self._request("PUT", "/chat-config/system-prompt", json={"prompt": prompt})
        return ChatConfig.model_validate(data)

    async def set_user_prompt(self, prompt: str) -> ChatConfig:
        """Instructions given to every chat as the user's (``<user-instructions>``)."""
        data = await self._request("PUT", "/chat-config/user-prompt", json={"prompt": prompt})
        return ChatConfig.model_validate(data)

    async def usage_limits(self) -> UsageLimits:
        return UsageLimits.model_validate(await self._request("GET", "/chat-config/usage-limits"))

    async def set_usage_limits(
        self,
        default_tokens: int | None,
        users: Mapping[str | uuid.UUID, int | None] | None = None,
    ) -> UsageLimits:
        """Replace the per-user token limits (per calendar month, UTC; admins only)."""
        body = {
            "default_tokens": default_tokens,
            "users": {str(k): v for k, v in (users or {}).items()},
        }
        data = await self._request("PUT", "/chat-config/usage-limits", json=body)
        return UsageLimits.model_validate(data)

    async def my_usage(self) -> MyUsage:
        """The caller's tokens this month and their limit."""
        return MyUsage.model_validate(await self._request("GET", "/users/me/usage"))

    # --- templates ------------------------------------------------------------------------

    async def push_template(self, source: str) -> Template:
        """Push a template written in YAML (admins only); creates a new version."""
        return Template.model_validate(
            await self._request("POST", "/templates", json={"source": source})
        )

    async def list_templates(self) -> list[Template]:
        return [Template.model_validate(t) for t in await self._request("GET", "/templates")]

    async def get_template(self, ref: str) -> Template:
        return Template.model_validate(await self._request("GET", f"/templates/{_seg(ref)}"))

    # --- workspaces -----------------------------------------------------------------------

    async def create_workspace(
        self,
        template: str,
        name: str,
        parameters: dict[str, str] | None = None,
        ttl_ms: int | None = None,
    ) -> Workspace:
        """Create a workspace; its first (start) build is ``latest_build``."""
        body = {
            "template": template,
            "name": name,
            "parameters": parameters or {},
            "ttl_ms": ttl_ms,
        }
        return Workspace.model_validate(await self._request("POST", "/workspaces", json=body))

    async def list_workspaces(self, all: bool = False) -> list[Workspace]:
        params = {"all": "true"} if all else None
        data = await self._request("GET", "/workspaces", params=params)
        return [Workspace.model_validate(w) for w in data]

    async def get_workspace(self, ref: str) -> Workspace:
        return Workspace.model_validate(await self._request("GET", f"/workspaces/{_seg(ref)}"))

    async def start_workspace(
        self, ref: str, parameters: dict[str, str] | None = None
    ) -> BuildResult:
        data = await self._request(
            "POST", f"/workspaces/{_seg(ref)}/start", json={"parameters": parameters or {}}
        )
        return BuildResult.model_validate(data)

    async def stop_workspace(self, ref: str) -> BuildResult:
        data = await self._request("POST", f"/workspaces/{_seg(ref)}/stop")
        return BuildResult.model_validate(data)

    async def delete_workspace(self, ref: str) -> BuildResult:
        data = await self._request("DELETE", f"/workspaces/{_seg(ref)}")
        return BuildResult.model_validate(data)

    async def rebuild_workspace(self, ref: str) -> BuildResult:
        """Stop (if running) and start again; the result is the new start build."""
        data = await self._request("POST", f"/workspaces/{_seg(ref)}/rebuild")
        return BuildResult.model_validate(data)

    async def cancel_build(self, ref: str) -> Build:
        data = await self._request("POST", f"/workspaces/{_seg(ref)}/cancel")
        return Build.model_validate(data)

    async def list_builds(self, ref: str) -> list[Build]:
        data = await self._request("GET", f"/workspaces/{_seg(ref)}/builds")
        return [Build.model_validate(b) for b in data]

    async def build_logs(self, ref: str, build: int | None = None) -> BuildLogs:
        """The job log of a build (``build`` is its number; default the latest)."""
        params = {"build": build} if build is not None else None
        data = await self._request("GET", f"/workspaces/{_seg(ref)}/logs", params=params)
        return BuildLogs.model_validate(data)

    async def agent_logs(self, ref: str, agent_id: str) -> list[dict[str, Any]]:
        """The startup-script log of one of the workspace's agents."""
        data = await self._request("GET", f"/workspaces/{_seg(ref)}/agents/{_seg(agent_id)}/logs")
        return list(data.get("logs") or [])

    async def follow_logs(
        self, ref: str, build: int | None = None
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """Stream a build's log: ``("log", {"level", "output"})`` per line, then one
        ``("done", <build JSON>)`` when the job has finished. No read timeout (a build can be
        quiet for long): bound it with ``asyncio.timeout`` on the caller's side."""
        params: dict[str, Any] = {"follow": "true"}
        if build is not None:
            params["build"] = build
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            async with self._http.stream(
                "GET", f"{API}/workspaces/{_seg(ref)}/logs", params=params, timeout=timeout
            ) as response:
                if response.is_error:
                    raise _api_error(response.status_code, await response.aread())
                async for event in iter_sse(response.aiter_lines()):
                    try:
                        data = event.json()
                    except ValueError:
                        data = event.data
                    yield event.event, data
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    async def wait_for_build(
        self, ref: str, build_id: Any, timeout: float, *, poll_s: float = 0.5
    ) -> Build:
        """Poll until the build ``build_id`` is no longer pending/running/canceling and return
        it (whatever its outcome); raises :class:`WaitTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        wanted = str(build_id)
        while True:
            build = next((b for b in await self.list_builds(ref) if str(b.id) == wanted), None)
            if build is None:
                raise ApiError(404, "not_found", f"build {wanted} not found in workspace {ref}")
            if not build.in_progress:
                return build
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(
                    f"build #{build.build_number} of {ref} is still {build.status} "
                    f"after {timeout:g}s"
                )
            await asyncio.sleep(min(poll_s, remaining))

    async def exec(
        self,
        ref: str,
        command: str,
        timeout_s: float | None = None,
        workdir: str | None = None,
        background: bool = False,
    ) -> ExecResult | BackgroundStarted:
        """Run a shell command in the workspace through its agent. Foreground: the result
        (exit code, output, ``timed_out``); ``background=True``: the started process id."""
        body = {
            "command": command,
            "timeout_s": timeout_s,
            "workdir": workdir,
            "background": background,
        }
        http_timeout = max(self.timeout, (timeout_s or 0.0) + EXEC_MARGIN_S)
        data = await self._request(
            "POST", f"/workspaces/{_seg(ref)}/exec", json=body, timeout=http_timeout
        )
        if background:
            return BackgroundStarted.model_validate(data)
        return ExecResult.model_validate(data)


def _connect_reason(exc: BaseException) -> str:
    """The root cause of a failed connect, in words (httpx only says "All connection
    attempts failed")."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError):
            return "connection timed out"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def _api_error(status: int, content: bytes) -> ApiError:
    """Build the error from the API's ``{code, message, details}`` body (or whatever came)."""
    try:
        body = jsonlib.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        details = body.get("details")
        return ApiError(
            status,
            str(body["code"]),
            str(body.get("message") or body["code"]),
            details if isinstance(details, dict) else {},
        )
    text = content.decode("utf-8", "replace").strip()
    if isinstance(body, dict) and "detail" in body:  # framework default errors
        text = str(body["detail"])
    return ApiError(status, f"http_{status}", text or f"HTTP {status}")
