"""The workspace agent's API contract, run against ``FakeAgent`` (``tether.testing``, what
the pre-LLM setup tests stand on), the same fake through a ``FakeAgentDialer`` conn (how
those tests reach it) and a real ``tether agent`` process through ``AgentClient``. The real
agent is the truth: where they disagree, the fake is wrong.

Covered: foreground exec (output, exit code, timeout, the process id and reading it again),
background processes (list, output, signal), files (read window, write, edit, list),
instruction files and skills, MCP listing (ok / error / pending, ``wait``) and calls, typed
errors (404 / 400 with the agent's code) and a stopped agent (transport error).

Commands run for real on the real agent; the fake is scripted with what each does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from support.agent_procs import RunningAgent, start_agent, stop_agent
from tether.agent.schemas import BackgroundStarted, ExecResult, FileEdits
from tether.errors import AgentRequestFailed, AgentTransportError
from tether.testing.fake_agent import FakeAgent, FakeMcpServer, FakeMcpTool
from tether.testing.fake_agent_dialer import FakeAgentDialer
from tether.testing.fake_binding_store import agent_row

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ECHO_SERVER = FIXTURES / "mcp_echo_server.py"
HANGING_SERVER = FIXTURES / "mcp_hanging_server.py"
PRINTS = "printf 'one\\ntwo\\nthree\\n'; exit 3"
FOREVER = "sleep 60"
QUICK = "printf 'a\\nb\\n'"
DEADLINE_S = 10.0  # generous ceiling for waits that end on their own


class Side(Protocol):
    """One implementation under test, as seen by the contract."""

    api: Any  # AgentClient or FakeAgent
    home: Path
    project: Path

    def mcp(self, **servers: str) -> None:
        """Configure MCP servers by kind: ``echo``, ``broken`` or ``hangs``."""

    async def stop(self) -> None: ...


# --- the fake -------------------------------------------------------------------------------


def _add(args: dict[str, Any]) -> str:
    return str(int(args["a"]) + int(args["b"]))


def _fail(args: dict[str, Any]) -> str:
    raise RuntimeError("this tool always fails")


ECHO_TOOLS = [
    FakeMcpTool(
        "add",
        "Add two integers.",
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        _add,
    ),
    FakeMcpTool(
        "echo",
        "Return the text unchanged.",
        {"type": "object", "properties": {"text": {"type": "string"}}},
        lambda args: str(args["text"]),
    ),
    FakeMcpTool("fail", "Always raise, so callers can see an error result.", handler=_fail),
]


class FakeSide:
    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.project = self.home / "project"
        self.project.mkdir(parents=True)
        self.agent = FakeAgent(self.home, self.project)
        self.api: Any = self.agent
        self.agent.script(PRINTS, "one\ntwo\nthree\n", 3)
        self.agent.script(FOREVER, runs_s=None)
        self.agent.script(QUICK, "a\nb\n")

    async def through_a_conn(self, tmp_path: Path) -> None:
        """Speak to the agent through a ``FakeAgentDialer`` conn, as chatd tests do."""
        dialer = FakeAgentDialer(tmp_path / "agents")
        row = agent_row(uuid.uuid4(), uuid.uuid4())
        dialer.agents[row.id] = self.agent
        self.api = await dialer.dial(row, headers={})

    def mcp(self, **servers: str) -> None:
        made = []
        for name, kind in servers.items():
            if kind == "echo":  # a real server takes a moment to connect
                connected = asyncio.Event()
                asyncio.get_running_loop().call_later(0.2, connected.set)
                made.append(FakeMcpServer(name, tools=list(ECHO_TOOLS), connected=connected))
            elif kind == "broken":
                made.append(FakeMcpServer(name, error="[Errno 2] No such file or directory"))
            else:
                made.append(FakeMcpServer(name, connected=asyncio.Event()))
        self.agent.set_mcp_servers(*made)

    async def stop(self) -> None:
        await self.agent.stop()


# --- the real agent -----------------------------------------------------------------------------


class RealSide:
    def __init__(self, agent: RunningAgent) -> None:
        self.agent = agent
        self.home = agent.home
        self.project = agent.project
        self.api = agent.client(request_timeout=40.0)

    def mcp(self, **servers: str) -> None:
        config: dict[str, object] = {}
        for name, kind in servers.items():
            if kind == "echo":
                config[name] = {"command": sys.executable, "args": [str(ECHO_SERVER)]}
            elif kind == "broken":
                config[name] = {"command": str(self.project / "no-such-binary")}
            else:
                config[name] = {"command": sys.executable, "args": [str(HANGING_SERVER)]}
        (self.project / ".mcp.json").write_text(json.dumps({"mcpServers": config}))

    async def stop(self) -> None:
        await stop_agent(self.agent.proc)


@pytest.fixture(params=["fake", "fake_conn", pytest.param("real", marks=pytest.mark.integration)])
async def side(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Side]:
    if request.param != "real":
        fake = FakeSide(tmp_path)
        if request.param == "fake_conn":
            await fake.through_a_conn(tmp_path)
        try:
            yield fake
        finally:
            await fake.stop()
        return
    agent = await start_agent(tmp_path)
    real = RealSide(agent)
    try:
        yield real
    finally:
        await real.api.aclose()
        await stop_agent(agent.proc)


async def _failed(aw: Any) -> AgentRequestFailed:
    with pytest.raises(AgentRequestFailed) as info:
        await aw
    return info.value


async def _until_exited(side: Side, pid: str) -> Any:
    """The process's output once it has exited (the agent reaps it asynchronously)."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            out = await side.api.process_output(pid)
            if not out.running:
                return out
            await asyncio.sleep(0.02)


async def test_health(side: Side) -> None:
    health = await side.api.health()
    assert (health.status, health.lifecycle) == ("ok", "ready") and health.uptime_s >= 0


# --- exec and processes -----------------------------------------------------------------------


async def test_foreground_exec_output_exit_code_and_process_id(side: Side) -> None:
    result = await side.api.exec(PRINTS, timeout_s=DEADLINE_S)
    assert isinstance(result, ExecResult)
    assert (result.exit_code, result.output) == (3, "one\ntwo\nthree\n")
    assert not result.timed_out and result.error is None and not result.truncated
    assert result.process_id
    # The streamed command can be read again by its id, and is not a listed process.
    again = await side.api.process_output(result.process_id)
    assert (again.running, again.exit_code, again.output) == (False, 3, "one\ntwo\nthree\n")
    listed = await side.api.process_list()
    assert result.process_id not in {p.process_id for p in listed.processes}


async def test_foreground_timeout_is_reported_and_the_command_ended(side: Side) -> None:
    began = time.monotonic()
    result = await side.api.exec(FOREVER, timeout_s=0.5)
    assert time.monotonic() - began < DEADLINE_S
    assert result.timed_out and result.exit_code == -1
    assert result.error == "command timed out after 0.5s"
    assert result.process_id
    out = await _until_exited(side, result.process_id)
    assert out.exit_code is not None


async def test_unknown_command_is_exit_127(side: Side) -> None:
    result = await side.api.exec("no-such-command-zz", timeout_s=DEADLINE_S)
    assert result.exit_code == 127 and not result.timed_out
    assert "no-such-command-zz" in result.output and "not found" in result.output


async def test_background_process_listed_read_and_signalled(side: Side) -> None:
    started = await side.api.exec(FOREVER, background=True)
    assert isinstance(started, BackgroundStarted) and started.process_id
    quick = await side.api.exec(QUICK, background=True)

    listed = {p.process_id: p for p in (await side.api.process_list()).processes}
    assert listed[started.process_id].command == FOREVER
    assert listed[started.process_id].running and listed[started.process_id].exit_code is None
    done = await _until_exited(side, quick.process_id)
    assert (done.exit_code, done.output, done.truncated) == (0, "a\nb\n", False)

    sent = await side.api.process_signal(started.process_id, "terminate")
    assert (sent.process_id, sent.signal) == (started.process_id, "terminate")
    assert sent.message == f"sent terminate to process {started.process_id}"
    ended = await _until_exited(side, started.process_id)
    assert ended.exit_code == 128 + 15
    again = await side.api.process_signal(started.process_id, "kill")
    assert again.message == f"process {started.process_id} has already exited"
    listed = {p.process_id: p for p in (await side.api.process_list()).processes}
    assert not listed[started.process_id].running


async def test_process_errors_are_typed(side: Side) -> None:
    for call in (
        side.api.process_output("nope"),
        side.api.process_signal("nope", "terminate"),
        side.api.process_signal("nope", "hup"),  # 404 before 400
    ):
        err = await _failed(call)
        assert (err.status, err.agent_code) == (404, "not_found")
    started = await side.api.exec(FOREVER, background=True)
    err = await _failed(side.api.process_signal(started.process_id, "hup"))
    assert (err.status, err.agent_code) == (400, "invalid_input")
    await side.api.process_signal(started.process_id, "kill")
    assert (await _until_exited(side, started.process_id)).exit_code == 128 + 9


async def test_bad_exec_is_a_400(side: Side) -> None:
    for command, options in [
        ("", {}),
        ("true", {"timeout_s": 0}),
        ("true", {"timeout_s": 3601}),
        ("true", {"workdir": "nope"}),
    ]:
        for background in (True, False):
            err = await _failed(side.api.exec(command, background=background, **options))
            assert (err.status, err.agent_code) == (400, "invalid_input"), (command, options)


# --- files --------------------------------------------------------------------------------------


async def test_files_write_read_window_edit_and_list(side: Side) -> None:
    written = await side.api.write_file("src/a.txt", "l1\nl2\nl3\nl4\n")
    assert written.path == str(side.project / "src" / "a.txt") and written.bytes_written == 12

    window = await side.api.read_file("src/a.txt", offset=2, limit=2)
    assert (window.content, window.total_lines, window.lines_read) == ("l2\nl3\n", 4, 2)
    assert (window.file_size, window.binary) == (12, False)
    home = await side.api.read_file("~/project/src/a.txt")
    assert home.path == written.path and home.lines_read == 4

    edited = await side.api.edit_files(
        [
            FileEdits.model_validate(
                {"path": "src/a.txt", "edits": [{"search": "l2", "replace": "two"}]}
            ),
            {"path": "src/a.txt", "edits": [{"search": "l", "replace": "x"}]},
            {"path": "src/missing.txt", "edits": [{"search": "a", "replace": "b"}]},
        ]
    )
    ok, ambiguous, missing = edited.files
    assert (ok.ok, ok.applied, ok.errors) == (True, 1, [])
    assert not ambiguous.ok and ambiguous.errors[0].index == 0
    assert ambiguous.errors[0].message == "matches 3 times; add context"
    assert not missing.ok and missing.errors[0].message == "file not found"
    assert (await side.api.read_file("src/a.txt")).content == "l1\ntwo\nl3\nl4\n"

    (side.project / "src" / "bin.dat").write_bytes(b"\x00\x01")
    assert (await side.api.read_file("src/bin.dat")).binary
    listing = await side.api.list_dir("src")
    assert [(e.name, e.type, e.size) for e in listing.entries] == [
        ("a.txt", "file", 13),
        ("bin.dat", "file", 2),
    ]
    top = await side.api.list_dir()
    assert top.path == str(side.project) and ("src", "dir", 0) in {
        (e.name, e.type, e.size) for e in top.entries
    }


FILE_ERRORS: list[tuple[Any, int, str]] = [
    (lambda api: api.read_file("missing.txt"), 404, "not_found"),
    (lambda api: api.read_file("."), 400, "is_a_directory"),
    (lambda api: api.read_file("f.txt", offset=0), 400, "invalid_input"),
    (lambda api: api.read_file("", limit=1), 400, "invalid_input"),
    (lambda api: api.list_dir("missing"), 404, "not_found"),
    (lambda api: api.list_dir("f.txt"), 400, "not_a_directory"),
    (lambda api: api.write_file(".", "x"), 400, "is_a_directory"),
    (lambda api: api.write_file("a\x00b", "x"), 400, "invalid_input"),
]


async def test_file_errors_are_typed(side: Side) -> None:
    (side.project / "f.txt").write_text("x\n")
    got = []
    for call, _, _ in FILE_ERRORS:
        err = await _failed(call(side.api))
        got.append((err.status, err.agent_code))
    assert got == [(status, code) for _, status, code in FILE_ERRORS]


# --- instruction files and skills -----------------------------------------------------------------


async def test_instructions_home_then_project_and_skills(side: Side) -> None:
    (side.home / ".tether").mkdir()
    (side.home / ".tether" / "agents.md").write_text("# Home\r\n<!-- hidden -->\r\nrules\n")
    (side.project / "AGENTS.md").write_text("# Project rules\n")
    for name, front in [
        ("deploy", "name: deploy\ndescription: Ship it."),
        ("Bad_Name", "name: Bad_Name\ndescription: x"),
        ("other", "name: not-other\ndescription: poses as another"),
    ]:
        folder = side.project / ".agents" / "skills" / name
        folder.mkdir(parents=True)
        (folder / "SKILL.md").write_text(f"---\n{front}\n---\nbody\n")

    found = await side.api.instructions()
    assert found.os == "linux" and found.directory == str(side.project)
    assert [(f.path, f.content, f.truncated) for f in found.files] == [
        (str(side.home / ".tether" / "agents.md"), "# Home\n\nrules", False),
        (str(side.project / "AGENTS.md"), "# Project rules", False),
    ]
    [skill] = found.skills
    assert (skill.name, skill.description) == ("deploy", "Ship it.")
    assert skill.path == str(side.project / ".agents" / "skills" / "deploy" / "SKILL.md")


async def test_no_instruction_files_and_empty_ones_are_left_out(side: Side) -> None:
    assert (await side.api.instructions()).files == []
    (side.project / "AGENTS.md").write_text("<!-- only a comment -->\n\u200b\n")
    found = await side.api.instructions()
    assert (found.files, found.skills) == ([], [])


# --- MCP ----------------------------------------------------------------------------------------


def _statuses(listing: Any) -> dict[str, str]:
    return {s.name: s.status for s in listing.servers}


async def test_no_mcp_config_lists_nothing(side: Side) -> None:
    listing = await side.api.mcp_tools(wait=0)
    assert (listing.tools, listing.servers) == ([], [])
    err = await _failed(side.api.mcp_call("echo__echo", {"text": "x"}))
    assert (err.status, err.agent_code) == (404, "not_found")


async def test_mcp_ok_and_failed_servers_and_calls(side: Side) -> None:
    side.mcp(echo="echo", broken="broken")
    listing = await side.api.mcp_tools()  # default wait: until both attempts ended
    assert _statuses(listing) == {"echo": "ok", "broken": "error"}
    broken = next(s for s in listing.servers if s.name == "broken")
    assert broken.error and broken.retry_in_s is not None and broken.retry_in_s > 0
    assert sorted(t.name for t in listing.tools) == ["echo__add", "echo__echo", "echo__fail"]
    add = next(t for t in listing.tools if t.name == "echo__add")
    assert (add.server, add.tool, add.description) == ("echo", "add", "Add two integers.")
    assert set(add.input_schema["properties"]) == {"a", "b"}

    echoed = await side.api.mcp_call("echo__echo", {"text": "hi there"})
    assert (echoed.is_error, [(c.type, c.text) for c in echoed.content]) == (
        False,
        [("text", "hi there")],
    )
    assert (await side.api.mcp_call("echo__add", {"a": 2, "b": 40})).content[0].text == "42"
    failed = await side.api.mcp_call("echo__fail", {})
    assert failed.is_error and "always fails" in (failed.content[0].text or "")
    for name in ("echo__nope", "broken__x", "nothing"):
        err = await _failed(side.api.mcp_call(name, {}))
        assert (err.status, err.agent_code) == (404, "not_found")
    err = await _failed(side.api.mcp_call("", {}))
    assert (err.status, err.agent_code) == (400, "invalid_input")


async def test_mcp_call_waits_for_its_server_still_connecting(side: Side) -> None:
    side.mcp(echo="echo", hangs="hangs")
    # No listing first (the agent restarted): the call waits for the echo server only.
    echoed = await side.api.mcp_call("echo__echo", {"text": "early"})
    assert (echoed.is_error, echoed.content[0].text) == (False, "early")
    listing = await side.api.mcp_tools(wait=0)
    assert _statuses(listing) == {"echo": "ok", "hangs": "pending"}


async def test_mcp_pending_server_is_bounded_by_wait_and_not_waited_for_twice(
    side: Side,
) -> None:
    side.mcp(hangs="hangs")
    began = time.monotonic()
    first = await side.api.mcp_tools(wait=1.0)
    took = time.monotonic() - began
    assert 0.8 <= took < 1.0 + 2.0  # waited for it, within the bound
    assert _statuses(first) == {"hangs": "pending"} and first.tools == []
    pending = first.servers[0]
    assert pending.error is None and pending.retry_in_s is None
    # The same attempt is not waited for again (the old agent waited each time).
    began = time.monotonic()
    second = await side.api.mcp_tools(wait=1.0)
    assert time.monotonic() - began < 0.8
    assert _statuses(second) == {"hangs": "pending"}


async def test_mcp_bad_wait_is_a_400(side: Side) -> None:
    err = await _failed(side.api.mcp_tools(wait=-1))
    assert (err.status, err.agent_code, err.details.get("agent_code")) == (
        400,
        "invalid_input",
        "invalid_input",
    )


# --- a stopped agent ------------------------------------------------------------------------------


async def test_stopped_agent_fails_with_a_transport_error(side: Side) -> None:
    await side.stop()
    for call in (side.api.instructions(), side.api.mcp_tools(wait=0), side.api.list_dir()):
        with pytest.raises(AgentTransportError) as info:
            await call
        assert not info.value.sent  # refused before it left: safe to retry
