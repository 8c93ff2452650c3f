"""``tether chat`` as a user runs it: a real ``tether server`` process (the default model,
the scripted offline demo model — no LLM provider) driven through the real CLI. One server
per module; every workspace the chats create is stopped at teardown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.cli_server import running_server
from tether.demo import PYTHON_TEMPLATE, LocalServer

pytestmark = pytest.mark.integration

DEMO_TOOLS = ["list_templates", "create_workspace", "write_file", "execute", "read_file"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with running_server(tmp_path_factory.mktemp("tether-chat-acceptance")) as srv:
        pushed = srv.cli("templates", "push", str(PYTHON_TEMPLATE))
        assert pushed.returncode == 0, pushed.stderr
        yield srv


def ok(server: LocalServer, *args: str) -> subprocess.CompletedProcess[str]:
    result = server.cli(*args, timeout=90)
    assert result.returncode == 0, (
        f"tether {' '.join(args)} → {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{server.log_tail()}"
    )
    assert "Traceback" not in result.stderr
    return result


def as_json(server: LocalServer, *args: str) -> Any:
    return json.loads(ok(server, *args, "--json").stdout)


@pytest.fixture(scope="module")
def hello_chat(server: LocalServer) -> tuple[str, str]:
    """``tether chat "build me a hello world"``: (chat id, stdout)."""
    result = ok(server, "chat", "build me a hello world")
    first = result.stdout.splitlines()[0]
    assert first.startswith("chat "), result.stdout
    return first.split()[1], result.stdout


def test_chat_streams_tool_calls_and_the_answer(hello_chat: tuple[str, str]) -> None:
    _, stdout = hello_chat
    calls = [line.split()[1] for line in stdout.splitlines() if line.startswith("→ ")]
    assert calls == DEMO_TOOLS, stdout
    assert '→ execute {"command": "python3 hello.py"}' in stdout
    assert "← ok exit 0 · 1 line" in stdout
    assert "hello from tether" in stdout.split("→ read_file")[1]  # the final answer quotes it
    assert "building workspace" in stdout


def test_chat_json_is_ndjson_with_a_summary(server: LocalServer) -> None:
    result = ok(server, "chat", "--json", "build me a hello world")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["event"] == "chat"
    kinds = {line["event"] for line in lines}
    assert {"message", "status", "summary"} <= kinds
    calls = [
        p["tool_name"]
        for line in lines
        if line["event"] == "message" and line["data"]["role"] == "assistant"
        for p in line["data"]["parts"]
        if p["type"] == "tool-call"
    ]
    assert calls == DEMO_TOOLS
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["status"] == "waiting"
    assert summary["tool_calls"] == 5 and "hello from tether" in summary["reply"]
    assert summary["exit_code"] == 0


def test_show_and_list(server: LocalServer, hello_chat: tuple[str, str]) -> None:
    chat_id, _ = hello_chat
    listed = as_json(server, "chat", "list")
    assert chat_id in [c["id"] for c in listed]
    table = ok(server, "chat", "list").stdout
    assert chat_id[:8] in table and "build me a hello world" in table
    shown = as_json(server, "chat", "show", chat_id)
    chat = shown["chat"]
    assert chat["status"] == "waiting" and chat["workspace_id"] and chat["agent_id"]
    assert [m["role"] for m in shown["messages"]][:2] == ["user", "assistant"]
    human = ok(server, "chat", "show", chat_id[:8]).stdout
    assert "status:" in human and "waiting" in human
    assert chat["workspace_id"] in human and chat["build_id"] in human
    assert "› build me a hello world" in human and "→ write_file" in human
    assert "hello from tether" in human


def test_send_on_a_finished_chat_runs_another_turn(
    server: LocalServer, hello_chat: tuple[str, str]
) -> None:
    chat_id, _ = hello_chat
    before = len(as_json(server, "chat", "show", chat_id)["messages"])
    result = ok(server, "chat", "send", chat_id, "once more please")
    assert "→ list_templates" in result.stdout
    assert "already_exists" in result.stdout  # the chat's workspace is reused
    assert "hello from tether" in result.stdout
    after = as_json(server, "chat", "show", chat_id)
    assert after["chat"]["status"] == "waiting"
    assert len(after["messages"]) > before
    assert after["messages"][before]["parts"][0]["text"] == "once more please"


def test_watch_until_idle_replays_from_start(
    server: LocalServer, hello_chat: tuple[str, str]
) -> None:
    chat_id, _ = hello_chat
    result = ok(server, "chat", "watch", chat_id, "--from-start", "--until-idle")
    assert "› build me a hello world" in result.stdout
    assert result.stdout.count("→ execute") >= 1


def test_unknown_chat_is_a_clean_error(server: LocalServer) -> None:
    result = server.cli("chat", "show", "ffffffff-0000-4000-8000-000000000000")
    assert result.returncode == 1
    assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_without_a_tty_interrupts_the_turn(server: LocalServer) -> None:
    # Reset SIGINT to Python's default in the child: a parent that ignores SIGINT (a
    # background job) would otherwise make the child ignore it too.
    launcher = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'tether'; from tether.cli.main import main; main()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, "chat", "build me a hello world"],
        env=server.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("→ create_workspace"):
                proc.send_signal(signal.SIGINT)
                break
        assert any(line.startswith("→ create_workspace") for line in seen), "".join(seen)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert "interrupted: chat" in stderr, stderr
    chat_id = seen[0].split()[1]
    shown = as_json(server, "chat", "show", chat_id)
    assert shown["chat"]["status"] == "waiting"
    results = [
        p
        for m in shown["messages"]
        if m["role"] == "tool"
        for p in m["parts"]
        if p["type"] == "tool-result"
    ]
    assert results[-1]["tool_name"] == "create_workspace"
    assert results[-1].get("error_code") == "interrupted"


def test_chat_on_a_named_workspace_binds_to_it(server: LocalServer) -> None:
    ok(server, "workspaces", "create", "mine", "--template", "python")
    workspace_id = as_json(server, "workspaces", "show", "mine")["id"]
    result = ok(server, "chat", "--workspace", "mine", "--json", "say hello")
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["chat"]["workspace_id"] == workspace_id
    assert "hello from tether" in summary["reply"]
    missing = server.cli("chat", "--workspace", "nope", "hi")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_json_stream_errors_stay_one_object_per_line(server: LocalServer) -> None:
    """``tether chat send --json`` is NDJSON: even an API error is a single-line document."""
    result = server.cli("chat", "send", "ffffffff-0000-4000-8000-000000000000", "hi", "--json")
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines)
    assert json.loads(lines[-1])["error"]["code"] == "not_found"


def test_compact_and_clear_through_the_cli(
    server: LocalServer, hello_chat: tuple[str, str]
) -> None:
    chat_id, _ = hello_chat
    compacted = ok(server, "chat", "send", chat_id, "/compact")
    assert f"chat {chat_id}: compacted through message #" in compacted.stdout
    record = as_json(server, "chat", "clear", chat_id)
    assert record["kind"] == "clear" and record["number"] == 2
    messages = as_json(server, "chat", "show", chat_id)  # the history stays readable
    assert messages
    again = ok(server, "chat", "send", chat_id, "build me a hello world")
    assert "context cleared" not in again.stdout  # the line is printed when it happens
    assert "→ " in again.stdout  # the chat keeps answering after /clear
    record = as_json(server, "chat", "compact", chat_id)  # the command, same as /compact
    assert record["kind"] == "compact" and record["number"] == 3


def test_compaction_threshold_through_the_cli(server: LocalServer) -> None:
    assert as_json(server, "chat", "threshold") == {"compaction_threshold": None}
    shown = ok(server, "chat", "threshold", "0.5")
    assert "compaction threshold: 50% of each model's context window" in shown.stdout
    assert as_json(server, "chat", "threshold") == {"compaction_threshold": 0.5}
    refused = server.cli("chat", "threshold", "1.5", timeout=90)
    assert refused.returncode != 0 and "invalid_input" in refused.stderr + refused.stdout
    assert as_json(server, "chat", "threshold", "--unset") == {"compaction_threshold": None}
