"""Pure helpers of the agent: byte caps, sanitising, config parsing, protocol frames."""

from __future__ import annotations

import os
import pwd
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from tether.agent.instructions import find_instruction_files, sanitize
from tether.agent.mcpconfig import ConfigError, parse_config
from tether.agent.protocol import (
    Hello,
    LifecycleState,
    Manifest,
    Shutdown,
    encode_frame,
    parse_agent_frame,
    parse_server_frame,
)
from tether.agent.session import session_url
from tether.agent.startup import _LineBatcher
from tether.agent.state import AgentState, resolve_directory, with_login_shell
from tether.agent.text import cap_head, cap_tail, cap_text
from tether.clock import SystemClock


def test_cap_head_never_splits_a_character() -> None:
    data = "aé€😀".encode()  # 1 + 2 + 3 + 4 bytes
    for cap in range(len(data) + 1):
        head, cut = cap_head(data, cap)
        head.decode("utf-8")  # must not raise
        assert len(head) <= cap
        assert cut == (cap < len(data))
    assert cap_head(data, 5) == ("aé".encode(), True)


def test_cap_tail_starts_on_a_character() -> None:
    data = "aé€😀".encode()
    tail, cut = cap_tail(data, 5)
    assert tail.decode() == "😀" and cut
    assert cap_text("ééé", 3) == ("é", True)


def test_sanitize() -> None:
    text = "\ufeff# Title\r\n<!-- a\r\ncomment -->body\u200d\rend  \n\n"
    assert sanitize(text) == "# Title\nbody\nend"
    assert sanitize("<!-- only -->\n \u200b") == ""


def test_instruction_lookup_is_case_insensitive(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "home" / "p"
    (home / ".tether").mkdir(parents=True)
    project.mkdir()
    (home / ".tether" / "Agents.md").write_text("home")
    (project / "agents.md").write_text("project")
    files = find_instruction_files(home, project, cap=3)
    assert [(Path(f.path).name, f.content, f.truncated) for f in files] == [
        ("Agents.md", "hom", True),
        ("agents.md", "pro", True),
    ]
    # The same directory twice yields the file once.
    assert len(find_instruction_files(home, home / ".tether")) == 1


def test_parse_mcp_config() -> None:
    specs = parse_config(
        '{"mcpServers": {"a": {"command": "x", "args": ["1"], "env": {"K": 1}},'
        ' "b": {"url": "http://h/mcp"}, "c": {"url": "ftp://nope"}, "d": 3}}'
    )
    assert [(s.name, s.command, s.args, s.env, s.url, s.error is None) for s in specs] == [
        ("a", "x", ("1",), {"K": "1"}, None, True),
        ("b", None, (), {}, "http://h/mcp", True),
        ("c", None, (), {}, None, False),
        ("d", None, (), {}, None, False),
    ]
    assert parse_config("{}") == []
    with pytest.raises(ConfigError):
        parse_config("[1]")
    with pytest.raises(ConfigError):
        parse_config('{"mcpServers": []}')
    with pytest.raises(ConfigError):
        parse_config("{oops")


def test_protocol_round_trip() -> None:
    hello = Hello(address="127.0.0.1:1", os="linux", version="0.1.0", pid=7)
    assert parse_agent_frame(encode_frame(hello)) == hello
    lifecycle = parse_agent_frame('{"type":"lifecycle","state":"ready"}')
    assert lifecycle.type == "lifecycle" and lifecycle.state is LifecycleState.READY
    manifest = Manifest(agent_id=uuid.uuid4(), name="main", workspace_id=uuid.uuid4())
    assert parse_server_frame(encode_frame(manifest)) == manifest
    assert isinstance(parse_server_frame('{"type":"shutdown"}'), Shutdown)
    with pytest.raises(ValidationError):
        parse_agent_frame('{"type":"lifecycle","state":"dancing"}')
    with pytest.raises(ValidationError):
        parse_server_frame('{"type":"hello"}')


def test_session_url() -> None:
    assert session_url("http://h:1/") == "ws://h:1/api/v1/agent/session"
    assert session_url("https://h") == "wss://h/api/v1/agent/session"


def test_line_batcher_handles_split_lines_and_characters() -> None:
    batcher = _LineBatcher()
    data = "one\r\ntwo é\nthr".encode()
    for i in range(len(data)):  # one byte at a time, splitting the é
        batcher.feed(data[i : i + 1])
    assert batcher.take() == ["one", "two é"]
    batcher.feed(b"ee")
    batcher.finish()
    assert batcher.take() == ["three"]


def test_state_paths_and_env(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert resolve_directory(home, None) == home
    assert resolve_directory(home, "proj") == home / "proj"
    assert resolve_directory(home, "/abs") == Path("/abs")
    state = AgentState(
        home=home,
        directory=home / "proj",
        clock=SystemClock(),
        base_env={"PATH": "/bin", "TETHER_AGENT_TOKEN": "secret", "PAGER": "less"},
    )
    assert state.resolve("a/../b.txt") == home / "proj" / "b.txt"
    assert state.resolve("~/x") == home / "x"
    assert state.resolve("/etc/hosts") == Path("/etc/hosts")
    state.extra_env = {"FROM": "manifest"}
    env = state.command_env({"MINE": "1"})
    assert "TETHER_AGENT_TOKEN" not in env
    assert (env["PAGER"], env["FROM"], env["MINE"], env["TETHER_CHAT_AGENT"]) == (
        "cat",
        "manifest",
        "1",
        "true",
    )


def test_login_shell_is_added_to_the_command_environment_only_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bash without SHELL reads nsswitch.conf and /etc/passwd on every start (issue #12)."""
    expected = pwd.getpwuid(os.getuid()).pw_shell
    assert with_login_shell({"PATH": "/bin"}) == {"PATH": "/bin", "SHELL": expected}
    assert with_login_shell({"SHELL": "/usr/bin/zsh"}) == {"SHELL": "/usr/bin/zsh"}

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert with_login_shell({})["SHELL"] == "/bin/sh"  # what bash itself falls back to
