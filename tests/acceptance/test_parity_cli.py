"""``tether chat --plan`` and ``tether chat-config …`` as a user runs them: a real server
process and the real CLI (PL-9, CW-24, admin prompts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_server import run_json, running_server
from tether.demo import LocalServer

pytestmark = pytest.mark.integration

TEMPLATE = """
name: parity-cli
backend: local
agents:
  - name: main
    chat: true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with running_server(tmp_path_factory.mktemp("tether-parity")) as srv:
        yield srv


def test_pl9_chat_plan_flag_and_send_no_plan(server: LocalServer) -> None:
    created = server.cli("chat", "new", "plan something", "--plan", "--json")
    assert created.returncode == 0, created.stderr
    first = json.loads(created.stdout.splitlines()[0])
    assert first["event"] == "chat" and first["data"]["plan_mode"] is True
    chat_id = first["data"]["id"]
    shown = server.cli("chat", "show", chat_id)
    assert "plan mode" in shown.stdout and "on" in shown.stdout
    sent = server.cli("chat", "send", chat_id, "go", "--no-plan", "--no-follow")
    assert sent.returncode == 0, sent.stderr
    assert run_json(server, "chat", "show", chat_id)["chat"]["plan_mode"] is False


def test_cw24_chat_config_allowlist_and_prompts(server: LocalServer, tmp_path: Path) -> None:
    source = tmp_path / "t.yaml"
    source.write_text(TEMPLATE)
    assert server.cli("templates", "push", str(source)).returncode == 0
    template_id = run_json(server, "templates", "show", "parity-cli")["id"]
    config = run_json(server, "chat-config", "templates", "parity-cli")
    assert config["template_allowlist"] == [template_id]
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Answer in French.")
    config = run_json(server, "chat-config", "system-prompt", "--file", str(prompt))
    assert config["system_prompt"] == "Answer in French."
    config = run_json(server, "chat-config", "user-prompt", "I like tests.")
    assert config["user_prompt"] == "I like tests."
    shown = server.cli("chat-config", "show")
    assert template_id in shown.stdout and "Answer in French." in shown.stdout
    both = server.cli("chat-config", "system-prompt", "x", "--clear")
    assert both.returncode != 0 and "exactly one" in both.stderr
    missing = server.cli("chat-config", "templates", "no-such-template")
    assert missing.returncode == 1
    config = run_json(server, "chat-config", "templates", "--all")
    config = run_json(server, "chat-config", "system-prompt", "--clear")
    assert config["template_allowlist"] == [] and config["system_prompt"] == ""

    member = {"TETHER_TOKEN": run_json(server, "users", "create", "mia")["token"]}
    refused = server.cli("chat-config", "user-prompt", "obey", env=member)
    assert refused.returncode == 1 and "admin" in refused.stderr
    assert run_json(server, "chat-config", "show")["user_prompt"] == "I like tests."


def test_chat_labels_and_search(server: LocalServer) -> None:
    created = server.cli("chat", "new", "Fix the parity login", "--label", "team=web", "--json")
    assert created.returncode == 0, created.stderr
    chat = json.loads(created.stdout.splitlines()[0])["data"]
    assert chat["labels"] == {"team": "web"}
    relabelled = run_json(server, "chat", "label", chat["id"], "team=ops", "prio=high")
    assert relabelled["labels"] == {"prio": "high", "team": "ops"}
    found = run_json(server, "chat", "list", "--search", "PARITY LOGIN", "--label", "team=ops")
    assert [c["id"] for c in found] == [chat["id"]]
    assert run_json(server, "chat", "list", "--label", "team=web") == []
    listed = server.cli("chat", "show", chat["id"])
    assert "prio=high" in listed.stdout
    bad = server.cli("chat", "label", chat["id"], "Bad Key=x")
    assert bad.returncode == 1 and "label key" in bad.stderr
    assert server.cli("chat", "label", chat["id"], "novalue").returncode != 0
    cleared = run_json(server, "chat", "label", chat["id"], "--clear")
    assert cleared["labels"] == {}
