"""AgentClient error mapping and headers, over httpx's fake transport (no sockets)."""

from __future__ import annotations

import json

import httpx
import pytest

from tether.agentconn import AgentClient
from tether.errors import AgentError, AgentRequestFailed, AgentTransportError


def client_for(handler: httpx.MockTransport) -> AgentClient:
    return AgentClient(
        "agent.test:1", "sekrit", connect_timeout=1, request_timeout=5, transport=handler
    )


async def test_sends_secret_and_extra_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok", "lifecycle": "ready", "uptime_s": 1.5})

    client = client_for(httpx.MockTransport(handler))
    client.headers = {"X-Extra": "1"}
    client.set_chat("c1", ["r1", "p1"])
    health = await client.health()
    await client.aclose()
    assert health.uptime_s == 1.5
    [request] = seen
    assert request.headers["authorization"] == "Bearer sekrit"
    assert request.headers["x-extra"] == "1"
    assert request.headers["x-tether-chat-id"] == "c1"
    assert request.headers["x-tether-ancestor-chat-ids"] == "r1,p1"


async def test_exec_deadline_is_the_command_timeout_plus_the_margin() -> None:
    """The exec deadline is its own (timeout + exec margin), not a global request timeout."""
    timeouts: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        body = json.loads(request.content)
        assert body["timeout_s"] == 60
        assert body["stream"] is True
        result = {
            "exit_code": 0,
            "output": "",
            "truncated": False,
            "wall_ms": 1,
            "timed_out": False,
            "error": None,
        }
        lines = [{"process_id": "p1"}, {"result": result}]
        return httpx.Response(200, content="".join(json.dumps(x) + "\n" for x in lines))

    client = AgentClient(
        "agent.test:1",
        "sekrit",
        connect_timeout=1,
        request_timeout=30,
        exec_margin=2,
        transport=httpx.MockTransport(handler),
    )
    result = await client.exec("true", timeout_s=60)
    await client.aclose()
    assert result.process_id == "p1"
    assert timeouts[0]["read"] == 62
    assert timeouts[0]["connect"] == 1


@pytest.mark.parametrize(
    ("response", "status", "code"),
    [
        (httpx.Response(401, json={"code": "unauthorized", "message": "no"}), 401, "unauthorized"),
        (httpx.Response(404, json={"code": "not_found", "message": "gone"}), 404, "not_found"),
        (httpx.Response(500, text="boom"), 500, "error"),
    ],
)
async def test_error_statuses_become_request_failed(
    response: httpx.Response, status: int, code: str
) -> None:
    client = client_for(httpx.MockTransport(lambda request: response))
    with pytest.raises(AgentRequestFailed) as info:
        await client.read_file("x")
    await client.aclose()
    assert (info.value.status, info.value.agent_code) == (status, code)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("silent"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("garbage"),
    ],
)
async def test_transport_failures_become_transport_errors(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    client = client_for(httpx.MockTransport(handler))
    with pytest.raises(AgentTransportError) as info:
        await client.process_list()
    await client.aclose()
    assert info.value.__cause__ is exc


async def test_unexpected_body_is_an_agent_error() -> None:
    client = client_for(httpx.MockTransport(lambda request: httpx.Response(200, json={"x": 1})))
    with pytest.raises(AgentError):
        await client.instructions()
    await client.aclose()


async def test_requests_reach_their_paths_with_urls_parsed_once_per_path() -> None:
    """The fixed paths' URLs are parsed once per client and reused (issue #12); a request
    still goes to its own path with its own query, and a process's path is not kept (one per
    process would grow without bound)."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.startswith("/processes/"):
            body = {"process_id": "p", "running": False, "exit_code": 0, "output": ""}
            return httpx.Response(200, json={**body, "truncated": False})
        if request.url.path == "/mcp/tools":
            return httpx.Response(200, json={"tools": [], "servers": []})
        return httpx.Response(200, json={"status": "ok", "lifecycle": "ready", "uptime_s": 1})

    client = client_for(httpx.MockTransport(handler))
    for _ in range(2):
        await client.health()
    for pid in ("p1", "p2"):
        await client.process_output(pid)
    for wait in (None, 2.0):
        await client.mcp_tools(wait=wait)
    kept = dict(client._urls)
    await client.aclose()
    assert seen == [
        "http://agent.test:1/health",
        "http://agent.test:1/health",
        "http://agent.test:1/processes/p1/output",
        "http://agent.test:1/processes/p2/output",
        "http://agent.test:1/mcp/tools",
        "http://agent.test:1/mcp/tools?wait=2",
    ]
    assert set(kept) == {"/health", "/mcp/tools"}
