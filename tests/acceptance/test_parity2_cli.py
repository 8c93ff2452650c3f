"""``tether chat edit``, ``tether chat usage``, ``--image`` and ``tether chat-config
usage-limits`` as a user runs them: a real server process (the demo model) and the real CLI
(issue #14)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_server import run_json, running_server
from tether.demo import LocalServer

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with running_server(tmp_path_factory.mktemp("tether-parity2")) as srv:
        yield srv


def _new_chat(server: LocalServer, *args: str) -> str:
    created = server.cli("chat", "new", *args, "--json")
    assert created.returncode in (0, 1), created.stderr  # 1: the demo's turn may end in error
    first = json.loads(created.stdout.splitlines()[0])
    assert first["event"] == "chat"
    return str(first["data"]["id"])


def test_image_edit_and_usage(server: LocalServer, tmp_path: Path) -> None:
    image = tmp_path / "shot.png"
    image.write_bytes(PNG)
    chat_id = _new_chat(server, "what is in this picture?", "--image", str(image))
    shown = run_json(server, "chat", "show", chat_id)
    first = shown["messages"][0]
    assert [p["type"] for p in first["parts"]] == ["text", "image"]
    fake = tmp_path / "page.png"
    fake.write_bytes(b"<html><script>alert(1)</script></html>")
    refused = server.cli("chat", "send", chat_id, "and this?", "--image", str(fake))
    assert refused.returncode != 0 and "invalid_image" in refused.stdout + refused.stderr

    usage = run_json(server, "chat", "usage", chat_id)
    assert usage["requests"] >= 1 and usage["input_tokens"] > 0
    assert usage["turns"][0]["message_id"] == first["id"]
    text = server.cli("chat", "usage", chat_id)
    assert text.returncode == 0 and "input tokens" in text.stdout

    edited = server.cli("chat", "edit", chat_id, first["id"][:8], "say hello", "--no-follow")
    assert edited.returncode == 0, edited.stderr
    assert "edited" in edited.stdout
    # wait for the re-run to end, then the old first message is gone from the history
    watched = server.cli("chat", "watch", chat_id, "--until-idle")
    assert watched.returncode in (0, 1), watched.stderr
    history = run_json(server, "chat", "show", chat_id)["messages"]
    assert history[0]["parts"] == [{"type": "text", "text": "say hello"}]
    assert all(m["id"] != first["id"] for m in history)
    mine = run_json(server, "chat", "usage")
    assert mine["period"] == "month" and mine["input_tokens"] >= usage["input_tokens"]


def test_usage_limits_refuse_a_new_chat_and_a_message(server: LocalServer) -> None:
    chat_id = _new_chat(server, "count tokens")  # usage exists after a turn
    limits = run_json(server, "chat-config", "usage-limits", "--default", "1")
    assert limits["default_tokens"] == 1
    try:
        for args in (("chat", "new", "one more"), ("chat", "send", chat_id, "more")):
            refused = server.cli(*args)
            assert refused.returncode != 0
            assert "tokens this month" in refused.stdout + refused.stderr
        assert run_json(server, "chat", "usage")["remaining_tokens"] == 0
    finally:
        limits = run_json(server, "chat-config", "usage-limits", "--default", "none")
    assert limits["default_tokens"] is None
    bad = server.cli("chat-config", "usage-limits", "--user", "nobody-here=5")
    assert bad.returncode != 0
