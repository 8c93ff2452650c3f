"""Bad input gets a typed 4xx, never a 5xx, and hurts no one else (issue #8 §5).

Each test attacks a real server (uvicorn on loopback; SQLite and PostgreSQL) through real
HTTP and asserts the typed answer: oversized bodies and fields, integers and floats no
database column holds, lone surrogates and NUL characters, YAML alias bombs and deep
nesting, a huge ``ttl_ms`` stored in one user's workspace, and an agent's 4xx (a real
``tether agent``) that must reach the client as that 4xx, not 502."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from support.server import RunningServer, fast_settings, running_server
from tether.api.limits import MESSAGE_MAX_CHARS, TEMPLATE_SOURCE_MAX_CHARS
from tether.db.tables import workspaces as workspaces_table

JSON = {"content-type": "application/json"}

# 9 levels of 9 aliases: ~387 million nodes once expanded, from under 1 KiB of YAML.
ALIAS_BOMB = "name: bomb\nmcp:\n  l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10)
)


@pytest.fixture
async def srv(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    """A server on SQLite and on PostgreSQL (which refuses NUL characters in text)."""
    settings = fast_settings(tmp_path, db_url=db_url, run_chatd=False, run_provisioner=False)
    async with running_server(settings) as server:
        yield server


def _assert_typed(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and isinstance(body["details"], dict)
    return dict(body)


# --- body size and field lengths -------------------------------------------------------------


async def test_20mb_message_is_refused_with_413(srv: RunningServer) -> None:
    r = await srv.client.post("/api/v1/chats", json={"content": "x" * 20_000_000})
    _assert_typed(r, 413, "payload_too_large")
    assert (await srv.client.get("/api/v1/chats")).json() == []


async def test_chunked_body_over_the_limit_is_refused_with_413(srv: RunningServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"content": "'
        for _ in range(40):  # 2.5 MiB, no Content-Length
            yield b"x" * 65536
        yield b'"}'

    r = await srv.client.post("/api/v1/chats", content=chunks(), headers=JSON)
    _assert_typed(r, 413, "payload_too_large")


async def test_message_over_the_field_limit_is_refused_with_400(srv: RunningServer) -> None:
    r = await srv.client.post("/api/v1/chats", json={"content": "x" * (MESSAGE_MAX_CHARS + 1)})
    body = _assert_typed(r, 400, "invalid_input")
    assert str(body["details"]["field"]).startswith("content")  # type: ignore[index]


async def test_5mb_template_is_refused(srv: RunningServer) -> None:
    r = await srv.client.post(
        "/api/v1/templates", json={"source": "name: big\ndescription: " + "x" * 5_000_000}
    )
    _assert_typed(r, 413, "payload_too_large")
    source = "name: big\ndescription: " + "x" * TEMPLATE_SOURCE_MAX_CHARS
    r = await srv.client.post("/api/v1/templates", json={"source": source})
    body = _assert_typed(r, 400, "invalid_input")
    assert body["details"]["field"] == "source"  # type: ignore[index]


async def test_the_body_limit_is_configurable(tmp_path: Path) -> None:
    settings = fast_settings(
        tmp_path, run_chatd=False, run_provisioner=False, api_max_body_bytes=100
    )
    async with running_server(settings) as server:
        r = await server.client.post("/api/v1/chats", json={"content": "x" * 200})
        _assert_typed(r, 413, "payload_too_large")
        r = await server.client.post("/api/v1/chats", json={"content": "hi"})
        assert r.status_code == 201, r.text


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"template": "python", "name": "w", "ttl_ms": ' + b"9" * 5000 + b"}",
        b'{"template": "python", "name": "w", "ttl_ms": 100000000000000000000000000000}',
        b'{"template": "python", "name": "w", "ttl_ms": 1e400}',
        b'{"template": "python", "name": "w", "ttl_ms": NaN}',
        b'{"template": "python", "name": "w", "ttl_ms": -Infinity}',
        b'{"template": "python", "name": "w", "parameters": {"p": "1"}, "x": [1e999]}',
    ],
    ids=["5000-digits", "int-over-int64", "float-overflow", "nan", "-infinity", "nested-inf"],
)
async def test_huge_numbers_are_refused_with_400(srv: RunningServer, raw: bytes) -> None:
    await srv.push_template()
    r = await srv.client.post("/api/v1/workspaces", content=raw, headers=JSON)
    _assert_typed(r, 400, "invalid_input")
    assert (await srv.client.get("/api/v1/workspaces")).json() == []


async def test_ttl_ms_over_its_bound_is_refused(srv: RunningServer) -> None:
    await srv.push_template()
    r = await srv.client.post(
        "/api/v1/workspaces", json={"template": "python", "name": "w", "ttl_ms": 2**62}
    )
    body = _assert_typed(r, 400, "invalid_input")
    assert body["details"]["field"] == "ttl_ms"  # type: ignore[index]


async def test_huge_query_integer_is_refused(srv: RunningServer) -> None:
    r = await srv.client.post("/api/v1/chats", json={"content": "hi"})
    chat_id = r.json()["id"]
    r = await srv.client.get(f"/api/v1/chats/{chat_id}/messages", params={"after_seq": 10**30})
    _assert_typed(r, 400, "invalid_input")


# --- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"content": "\\ud800"}',
        b'{"content": "ok", "title": "a\\udfffb"}',
        b'{"content": [{"type": "text", "text": "x", "\\ud83d": 1}]}',
        b'{"content": "a\\u0000b"}',
        b'{"content": "\xff\xfe"}',
    ],
    ids=["lone-high", "lone-low", "in-a-key", "nul", "invalid-utf8"],
)
async def test_invalid_text_is_refused_with_400(srv: RunningServer, raw: bytes) -> None:
    r = await srv.client.post("/api/v1/chats", content=raw, headers=JSON)
    _assert_typed(r, 400, "invalid_input")
    assert (await srv.client.get("/api/v1/chats")).json() == []


async def test_invalid_text_in_the_url_is_refused_with_400(srv: RunningServer) -> None:
    for url in ("/api/v1/workspaces/a%00b", "/api/v1/chats?status=%ED%A0%80"):
        r = await srv.client.get(url)
        _assert_typed(r, 400, "invalid_input")


async def test_deeply_nested_json_is_refused_with_400(srv: RunningServer) -> None:
    deep = b'{"content": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    r = await srv.client.post("/api/v1/chats", content=deep, headers=JSON)
    _assert_typed(r, 400, "invalid_input")


async def test_a_valid_non_ascii_message_is_accepted(srv: RunningServer) -> None:
    r = await srv.client.post("/api/v1/chats", json={"content": "héllo 😀 — 日本"})
    assert r.status_code == 201, r.text


# --- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        ALIAS_BOMB,
        "name: deep\nmcp: " + "[" * 50_000 + "]" * 50_000,
        "name: cycle\nmcp: &a {x: *a}",
        "name: inf\nagents: [{name: a, order: .inf}]",
        "name: big\nagents: [{name: a, order: " + "9" * 5000 + "}]",
        "name: bin\nmcp: {x: !!binary aGVsbG8=}",
    ],
    ids=["alias-bomb", "deep", "recursive-alias", "inf", "5000-digit-int", "binary"],
)
async def test_hostile_yaml_is_refused_fast(srv: RunningServer, source: str) -> None:
    started = time.monotonic()
    r = await srv.client.post("/api/v1/templates", json={"source": source})
    took = time.monotonic() - started
    _assert_typed(r, 400, "invalid_input")
    # Expanding the bomb would take minutes and gigabytes; refusing it takes milliseconds.
    assert took < 5.0, f"refusing the template took {took:.1f}s"
    assert (await srv.client.get("/api/v1/templates")).json() == []


# --- errors are typed and documented ------------------------------------------------------------


async def test_routing_errors_are_typed(srv: RunningServer) -> None:
    _assert_typed(await srv.client.get("/api/v1/nope"), 404, "not_found")
    _assert_typed(await srv.client.put("/api/v1/chats"), 405, "method_not_allowed")
    r = await srv.client.post("/api/v1/chats", content=b"{not json", headers=JSON)
    _assert_typed(r, 400, "invalid_input")


async def test_every_operation_documents_the_error_statuses(srv: RunningServer) -> None:
    doc = (await srv.client.get("/openapi.json")).json()
    assert "ErrorOut" in doc["components"]["schemas"]
    operations = [op for item in doc["paths"].values() for op in item.values()]
    assert len(operations) > 20
    for op in operations:
        statuses = set(op["responses"])
        assert {"400", "401", "403", "404", "409", "413", "500", "502", "504"} <= statuses
        assert "422" not in statuses  # the API answers validation errors with 400


# --- one tenant's data cannot break another's request -------------------------------------------


@pytest.mark.integration
async def test_huge_stored_ttl_ms_does_not_break_anyones_listing(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        await server.push_template()
        victim = await server.user_client("victim")
        mallory = await server.user_client("mallory")
        async with victim, mallory:
            ids = {}
            for client, name in ((victim, "mine"), (mallory, "evil")):
                r = await client.post(
                    "/api/v1/workspaces", json={"template": "python", "name": name}
                )
                assert r.status_code == 201, r.text
                ids[name] = r.json()["id"]
            evil = await server.wait_ready(ids["evil"])  # a deadline needs a finished start
            # Data stored before ttl_ms was bounded (or written by hand): past the calendar.
            async with server.graph.engine.begin() as conn:
                await conn.execute(
                    sa.update(workspaces_table)
                    .where(workspaces_table.c.name == "evil")
                    .values(ttl_ms=2**62)
                )
            for client in (victim, mallory, server.client):
                r = await client.get("/api/v1/workspaces", params={"all": "true"})
                assert r.status_code == 200, r.text
            r = await server.client.get("/api/v1/workspaces", params={"all": "true"})
            listed = {w["name"]: w for w in r.json()}
            assert set(listed) == {"mine", "evil"}
            assert listed["evil"]["deadline"] is None and listed["evil"]["ttl_ms"] == 2**62
            r = await mallory.get(f"/api/v1/workspaces/{evil['id']}")
            assert r.status_code == 200, r.text


@pytest.mark.integration
async def test_an_agent_4xx_reaches_the_client_as_that_4xx(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        await server.push_template()
        r = await server.client.post("/api/v1/workspaces", json={"template": "python", "name": "w"})
        assert r.status_code == 201, r.text
        await server.wait_ready("w")
        r = await server.client.post(
            "/api/v1/workspaces/w/exec", json={"command": "true", "workdir": "/no/such/dir"}
        )
        body = _assert_typed(r, 400, "agent_request_failed")
        assert body["details"]["agent_code"] == "invalid_input"  # type: ignore[index]
        assert body["details"]["status"] == 400  # type: ignore[index]
        r = await server.client.post("/api/v1/workspaces/w/exec", json={"command": "echo ok"})
        assert r.status_code == 200, r.text
