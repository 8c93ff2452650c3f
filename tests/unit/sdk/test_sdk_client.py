"""TetherClient against a fake transport (httpx.MockTransport): requests, errors, SSE, waits."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tether.sdk import ApiError, ExecResult, ServerUnreachable, TetherClient, WaitTimeout

NOW = "2026-01-01T00:00:00Z"


def build_json(status: str = "running", number: int = 1, build_id: str | None = None) -> dict:
    return {
        "id": build_id or str(uuid.uuid4()),
        "workspace_id": str(uuid.uuid4()),
        "build_number": number,
        "transition": "start",
        "status": status,
        "job_id": str(uuid.uuid4()),
        "error": None,
        "reason": "initiator",
        "parameters": {},
        "template_version_id": str(uuid.uuid4()),
        "created_at": NOW,
        "started_at": None,
        "completed_at": None,
    }


class FakeApi:
    """Answers requests from a table; records what it saw."""

    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        self.routes = routes
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.raw_path.decode().partition("?")[0]
        answer = self.routes.get((request.method, path))
        if answer is None:
            return httpx.Response(404, json={"code": "not_found", "message": "no route"})
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)


def client_for(api: FakeApi) -> TetherClient:
    return TetherClient("http://tether.test/", "tok", transport=httpx.MockTransport(api))


async def test_sends_token_and_parses_user() -> None:
    user = {"id": str(uuid.uuid4()), "name": "ann", "role": "admin", "created_at": NOW}
    api = FakeApi({("GET", "/api/v1/users/me"): user})
    async with client_for(api) as client:
        me = await client.me()
    assert me.name == "ann"
    assert api.seen[0].headers["authorization"] == "Bearer tok"


async def test_error_body_becomes_api_error() -> None:
    body = {"code": "invalid_input", "message": "bad: agents[0].name", "details": {"field": "x"}}
    api = FakeApi({("POST", "/api/v1/templates"): httpx.Response(400, json=body)})
    async with client_for(api) as client:
        with pytest.raises(ApiError) as info:
            await client.push_template("name: 1")
    err = info.value
    assert (err.status, err.code, err.field) == (400, "invalid_input", "x")
    assert json.loads(api.seen[0].content) == {"source": "name: 1"}


async def test_non_json_error_keeps_status() -> None:
    api = FakeApi({("GET", "/api/v1/templates"): httpx.Response(502, text="bad gateway")})
    async with client_for(api) as client:
        with pytest.raises(ApiError) as info:
            await client.list_templates()
    assert (info.value.code, info.value.message) == ("http_502", "bad gateway")


async def test_refused_connection_is_server_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed") from ConnectionRefusedError()

    async with TetherClient("http://127.0.0.1:9", "t", transport=httpx.MockTransport(refuse)) as c:
        with pytest.raises(ServerUnreachable) as info:
            await c.me()
    assert "connection refused" in info.value.message
    assert "tether server" in info.value.message


async def test_refs_are_path_quoted_and_exec_parsed() -> None:
    result = {"exit_code": 3, "output": "x", "truncated": False, "wall_ms": 1, "timed_out": False}
    api = FakeApi({("POST", "/api/v1/workspaces/a%2Fb/exec"): result})
    async with client_for(api) as client:
        got = await client.exec("a/b", "exit 3", timeout_s=5)
    assert isinstance(got, ExecResult) and got.exit_code == 3
    assert api.seen[0].url.raw_path == b"/api/v1/workspaces/a%2Fb/exec"
    assert json.loads(api.seen[0].content)["timeout_s"] == 5


async def test_follow_logs_yields_log_then_done() -> None:
    done = build_json("succeeded")
    stream = (
        'id: 1\nevent: log\ndata: {"level":"info","output":"one"}\n\n'
        ": comment\n\n"
        f"event: done\ndata: {json.dumps(done)}\n\n"
    )

    def logs(request: httpx.Request) -> httpx.Response:
        assert request.url.params["follow"] == "true"
        assert request.url.params["build"] == "2"
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    api = FakeApi({("GET", "/api/v1/workspaces/w/logs"): logs})
    async with client_for(api) as client:
        events = [item async for item in client.follow_logs("w", 2)]
    assert events[0] == ("log", {"level": "info", "output": "one"})
    assert events[1][0] == "done" and events[1][1]["status"] == "succeeded"


async def test_wait_for_build_polls_until_finished() -> None:
    build_id = str(uuid.uuid4())
    answers = iter(["pending", "running", "failed"])

    def builds(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[build_json(next(answers), build_id=build_id)])

    api = FakeApi({("GET", "/api/v1/workspaces/w/builds"): builds})
    async with client_for(api) as client:
        build = await client.wait_for_build("w", build_id, timeout=5, poll_s=0.001)
    assert build.status == "failed" and len(api.seen) == 3


async def test_wait_for_build_is_bounded() -> None:
    build_id = str(uuid.uuid4())
    api = FakeApi(
        {("GET", "/api/v1/workspaces/w/builds"): [build_json("running", build_id=build_id)]}
    )
    async with client_for(api) as client:
        with pytest.raises(WaitTimeout):
            await client.wait_for_build("w", build_id, timeout=0.05, poll_s=0.01)
