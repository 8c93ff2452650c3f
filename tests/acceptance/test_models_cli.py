"""``tether models …`` and ``tether chat --model`` as a user runs them: a real server
process (its models from ``TETHER_MODELS_JSON``) and the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from support.cli_server import run_json, running_server
from tether.demo import LocalServer

pytestmark = pytest.mark.integration

MODELS = {
    "default": "demo",
    "models": [
        {"name": "demo", "provider": "scripted", "model": "demo"},
        {
            "name": "local",
            "provider": "openai-compatible",
            "model": "qwen",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": "LOCAL_API_KEY",
        },
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    env = {"TETHER_MODELS_JSON": json.dumps(MODELS), "LOCAL_API_KEY": "sk-never-shown-99"}
    with running_server(tmp_path_factory.mktemp("tether-models"), env=env) as srv:
        yield srv


def test_models_list_add_edit_remove(server: LocalServer) -> None:
    listed = server.cli("models", "list")
    assert listed.returncode == 0 and "demo" in listed.stdout and "local" in listed.stdout
    assert "sk-never-shown-99" not in listed.stdout and "LOCAL_API_KEY" not in listed.stdout

    added = run_json(
        server,
        "models",
        "add",
        "team",
        "--provider",
        "openai-compatible",
        "--model",
        "m1",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--api-key-env",
        "TEAM_API_KEY",
        "--no-stream",
    )
    assert (added["name"], added["source"], added["stream"]) == ("team", "admin", False)
    edited = run_json(server, "models", "edit", "team", "--model", "m2", "--request-timeout", "5")
    assert (edited["model"], edited["request_timeout_s"]) == ("m2", 5)
    assert edited["context_window"] is None
    window = ["--context-window", "8192", "--compaction-threshold", "0.5"]
    windowed = run_json(server, "models", "edit", "team", *window)
    assert (windowed["context_window"], windowed["compaction_threshold"]) == (8192, 0.5)
    names = [m["name"] for m in run_json(server, "models", "list")]
    assert names == ["demo", "local", "team"]
    assert server.cli("models", "remove", "team").returncode == 0
    assert [m["name"] for m in run_json(server, "models", "list")] == ["demo", "local"]


def test_member_cannot_add_and_chat_rejects_a_spec(server: LocalServer) -> None:
    created = run_json(server, "users", "create", "mel")
    member = {"TETHER_TOKEN": created["token"]}
    refused = server.cli(
        "models", "add", "x", "--provider", "scripted", "--model", "demo", env=member
    )
    assert refused.returncode == 1 and "admin" in refused.stderr
    chat = server.cli("chat", "--model", "python:sys:exit", "hi", env=member)
    assert chat.returncode == 1
    assert "not configured" in chat.stderr and "demo" in chat.stderr and "local" in chat.stderr
    assert server.cli("models", "list", env=member).returncode == 0  # the server is alive


def test_chat_send_switches_the_model(server: LocalServer) -> None:
    created = server.cli("chat", "new", "hi", "--model", "demo", "--json")
    assert created.returncode == 0, created.stderr
    first = json.loads(created.stdout.splitlines()[0])  # NDJSON: the chat comes first
    assert first["event"] == "chat" and first["data"]["model"] == "demo"
    chat_id = first["data"]["id"]
    refused = server.cli("chat", "send", chat_id, "again", "--model", "nope", "--no-follow")
    assert refused.returncode == 1 and "not configured" in refused.stderr
    sent = server.cli("chat", "send", chat_id, "again", "--model", "local", "--no-follow")
    assert sent.returncode == 0, sent.stderr
    assert run_json(server, "chat", "show", chat_id)["chat"]["model"] == "local"
