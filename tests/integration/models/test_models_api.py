"""Models are chosen by name (issue #8 §1): the attacks of a member through the API, and
the admin's management of models. A real server on a loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from models_env import SECRET_KEY, start_server

from support.server import RunningServer
from tether.errors import InvalidInput

OPERATOR_MODELS: list[dict[str, Any]] = [
    {"name": "demo", "provider": "scripted", "model": "demo"},
    {
        "name": "local",
        "provider": "openai-compatible",
        "model": "qwen",
        "base_url": "http://10.255.0.1:8080/v1",
        "api_key_env": "FAKE_PROVIDER_API_KEY",
    },
]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with start_server(tmp_path, OPERATOR_MODELS, model_request_timeout_s=42) as running:
        yield running


@pytest.fixture
async def member(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    client = await server.user_client("mallory")
    yield client
    await client.aclose()


def assert_no_key_material(text: str) -> None:
    assert SECRET_KEY not in text
    assert "FAKE_PROVIDER_API_KEY" not in text and "api_key" not in text


async def test_listing_shows_names_never_keys_or_key_sources(
    server: RunningServer, member: httpx.AsyncClient
) -> None:
    for client in (member, server.client):  # a member and an admin
        response = await client.get("/api/v1/models")
        assert response.status_code == 200
        assert_no_key_material(response.text)
        listed = {m["name"]: m for m in response.json()}
        assert set(listed) == {"demo", "local"}
        assert listed["demo"]["default"] is True and listed["local"]["default"] is False
    members_view = {m["name"]: m for m in (await member.get("/api/v1/models")).json()}
    assert members_view["local"]["base_url"] is None  # the operator's hosts are not shown


@pytest.mark.parametrize(
    "spec",
    [
        "python:sys:exit",
        "python:os:system",
        "openai-compatible:x@http://attacker.example/v1",
        "openai:gpt-4o",
        "local@http://attacker.example/v1",
        "nope",
    ],
)
async def test_a_chat_names_a_configured_model_or_gets_400_listing_them(
    server: RunningServer, member: httpx.AsyncClient, spec: str
) -> None:
    response = await member.post("/api/v1/chats", json={"content": "hi", "model": spec})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_input" and body["details"]["field"] == "model"
    assert body["details"]["available"] == ["demo", "local"]
    assert "demo" in body["message"] and "local" in body["message"]
    assert (await member.get("/api/v1/models")).status_code == 200  # the server is alive


async def test_a_chat_stores_the_name_and_the_default_when_none_is_given(
    member: httpx.AsyncClient,
) -> None:
    named = await member.post("/api/v1/chats", json={"content": "hi", "model": "local"})
    unnamed = await member.post("/api/v1/chats", json={"content": "hi"})
    assert (named.status_code, named.json()["model"]) == (201, "local")
    assert (unnamed.status_code, unnamed.json()["model"]) == (201, "demo")


async def test_members_cannot_add_edit_or_remove_models(
    server: RunningServer, member: httpx.AsyncClient
) -> None:
    spec = {
        "name": "mine",
        "provider": "openai-compatible",
        "model": "x",
        "base_url": "http://attacker.example/v1",
        "api_key_env": "OPENAI_API_KEY",
    }
    assert (await member.post("/api/v1/models", json=spec)).status_code == 403
    assert (await member.patch("/api/v1/models/local", json={"model": "y"})).status_code == 403
    assert (await member.delete("/api/v1/models/local")).status_code == 403
    assert {m["name"] for m in (await member.get("/api/v1/models")).json()} == {"demo", "local"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provider": "python", "model": "sys:exit"}, "provider"),
        ({"api_key_file": "/etc/shadow"}, "api_key_file"),
        ({"api_key_env": "TETHER_DB_URL"}, "api_key_env"),
        ({"api_key_env": "AWS_SECRET_ACCESS_KEY"}, "api_key_env"),
        ({"base_url": "file:///etc/passwd"}, "base_url"),
        ({"base_url": None}, "base_url"),  # openai-compatible needs one
        ({"provider": "scripted", "model": "tether.llm.scripted:demo_model"}, "model"),
        ({"request_timeout_s": 0}, "request_timeout_s"),
    ],
)
async def test_admin_models_cannot_import_code_read_files_or_name_server_secrets(
    server: RunningServer, change: dict[str, Any], field: str
) -> None:
    spec = {
        "name": "bad",
        "provider": "openai-compatible",
        "model": "m",
        "base_url": "http://127.0.0.1:9/v1",
        **change,
    }
    response = await server.client.post("/api/v1/models", json=spec)
    assert response.status_code == 400, response.text
    assert field in response.json()["details"]["field"]
    names = {m["name"] for m in (await server.client.get("/api/v1/models")).json()}
    assert "bad" not in names


async def test_admin_adds_edits_and_removes_a_model_members_then_use_it(
    server: RunningServer, member: httpx.AsyncClient
) -> None:
    spec = {
        "name": "team",
        "provider": "openai-compatible",
        "model": "m1",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "FAKE_PROVIDER_API_KEY",
        "request_timeout_s": 30,
        "stream": False,
    }
    added = await server.client.post("/api/v1/models", json=spec)
    assert added.status_code == 201, added.text
    assert_no_key_material(added.text)
    assert added.json()["source"] == "admin" and added.json()["stream"] is False
    assert (await server.client.post("/api/v1/models", json=spec)).status_code == 409

    chat = await member.post("/api/v1/chats", json={"content": "hi", "model": "team"})
    assert (chat.status_code, chat.json()["model"]) == (201, "team")

    edited = await server.client.patch("/api/v1/models/team", json={"model": "m2"})
    assert (edited.status_code, edited.json()["model"]) == (200, "m2")
    assert_no_key_material(edited.text)
    bad_edit = await server.client.patch("/api/v1/models/team", json={"provider": "python"})
    assert bad_edit.status_code == 400

    assert (await server.client.delete("/api/v1/models/team")).status_code == 204
    assert (await server.client.delete("/api/v1/models/team")).status_code == 404
    gone = await member.post("/api/v1/chats", json={"content": "hi", "model": "team"})
    assert gone.status_code == 400


async def test_operator_models_are_read_only_through_the_api(server: RunningServer) -> None:
    assert (
        await server.client.patch("/api/v1/models/local", json={"model": "x"})
    ).status_code == 409
    assert (await server.client.delete("/api/v1/models/demo")).status_code == 409
    clash = {"name": "local", "provider": "scripted", "model": "demo"}
    assert (await server.client.post("/api/v1/models", json=clash)).status_code == 409


async def test_a_hand_written_python_row_is_never_imported(
    server: RunningServer, member: httpx.AsyncClient
) -> None:
    """Defence in depth: admin rows are re-validated on every read."""
    admin = await server.graph.users.get_user_by_name("admin")
    await server.graph.models._store.add(
        "evil", {"provider": "python", "model": "sys:exit"}, user_id=admin.id
    )
    response = await member.post("/api/v1/chats", json={"content": "hi", "model": "evil"})
    assert response.status_code == 400
    with pytest.raises(InvalidInput, match="invalid"):
        await server.graph.models.model("evil")
    listed = await member.get("/api/v1/models")  # a bad row is left out, not a 400 for all
    assert listed.status_code == 200 and "evil" not in listed.text


async def test_a_message_switches_the_chat_to_another_configured_model(
    server: RunningServer, member: httpx.AsyncClient
) -> None:
    chat = (await member.post("/api/v1/chats", json={"content": "hi"})).json()
    url = f"/api/v1/chats/{chat['id']}/messages"
    refused = await member.post(url, json={"content": "x", "model": "python:sys:exit"})
    assert refused.status_code == 400 and refused.json()["details"]["available"]
    assert (await member.get(f"/api/v1/chats/{chat['id']}")).json()["model"] == "demo"
    sent = await member.post(url, json={"content": "x", "model": "local"})
    assert sent.status_code == 200, sent.text
    assert (await member.get(f"/api/v1/chats/{chat['id']}")).json()["model"] == "local"


async def test_models_without_bounds_get_the_settings_defaults(server: RunningServer) -> None:
    spec = {"name": "plain", "provider": "scripted", "model": "demo"}
    added = (await server.client.post("/api/v1/models", json=spec)).json()
    listed = {m["name"]: m for m in (await server.client.get("/api/v1/models")).json()}
    assert added["request_timeout_s"] == 42 == listed["local"]["request_timeout_s"]
    assert listed["plain"]["request_timeout_s"] == 42
