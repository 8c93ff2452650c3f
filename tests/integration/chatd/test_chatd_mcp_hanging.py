"""A hanging workspace MCP server never blocks the model (issue #9 §3), end to end: a real
server, a real agent, tests/fixtures/mcp_hanging_server.py (accepts stdio, never answers)
next to the working echo server."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tether.agentconn import AgentClient
from tether.llm.scripted import Say
from tether.testing.models import ScriptedModel

if TYPE_CHECKING:  # only an annotation: importing "conftest" at run time is ambiguous
    from chatd_env import Chatd

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ECHO = {"command": sys.executable, "args": [str(FIXTURES / "mcp_echo_server.py")]}
CONNECT_S = 8.0  # the per-server connect bound: what the first model call used to wait
FIRST_WAIT_S = 2.0  # the default mcp_first_call_wait_s
MARGIN_S = 2.0


def _template() -> str:
    # The server counts its starts in its working directory (the workspace's "project"):
    # a sandboxed workspace sees neither the test's tmp_path nor the host's /tmp.
    hangs = {
        "command": sys.executable,
        "args": [str(FIXTURES / "mcp_hanging_server.py"), "starts.txt"],
    }
    mcp = {"mcpServers": {"echo": ECHO, "hangs": hangs}}
    return f"""
name: hangingmcp
directory: project
backend: local
mcp: {json.dumps(mcp)}
agents:
  - name: main
    chat: true
"""


async def _until(client: AgentClient, name: str, status: str, timeout: float) -> None:
    """Ask the agent directly (not through chatd) until ``name`` has ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        listing = await client.mcp_tools(wait=0.5)
        if any(s.name == name and s.status == status for s in listing.servers):
            return
        assert time.monotonic() < deadline, f"{name} never became {status}: {listing.servers}"


def _timed(scripted: ScriptedModel, stamps: list[float], text: str) -> ScriptedModel:
    def first(_: Any) -> Say:
        stamps.append(time.monotonic())
        return Say(text)

    return scripted.then(first)


async def test_hanging_server_never_blocks_the_first_model_call(
    chatd: Chatd, tmp_path: Path
) -> None:
    settings = chatd.graph.settings
    assert settings.mcp_first_call_wait_s == FIRST_WAIT_S
    settings.mcp_server_connect_timeout_s = CONNECT_S  # sent to the agent in its manifest
    settings.mcp_server_retry_s = 120.0  # no background retry during the test
    chatd.template_id = await chatd.push_template(_template())
    ws, _ = await chatd.create_workspace()
    starts = chatd.graph.backends["local"].home(ws.id) / "project" / "starts.txt"
    agent = await chatd.wait_agent_ready(ws.id)
    direct = await chatd.dialer.inner.dial(agent, headers={})
    try:
        # The echo server is up; the hanging one is on its first attempt.
        await direct.mcp_tools(wait=0)
        await _until(direct, "echo", "ok", timeout=CONNECT_S - FIRST_WAIT_S - MARGIN_S)
        worker = chatd.start_worker()

        # Turn 1: the first model call waits at most the short bound, with echo's tools.
        stamps: list[float] = []
        first = _timed(ScriptedModel(), stamps, "one")
        began = time.monotonic()
        chat = await chatd.new_chat("hello", first.build(), workspace_id=ws.id)
        chat = await chatd.wait_status(chat.id, timeout=30)
        assert chat.last_error is None, chat.last_error
        assert stamps[0] - began < FIRST_WAIT_S + MARGIN_S  # before: ≈ CONNECT_S
        assert "echo__echo" in first.requests[0].tool_names
        assert not any(n.startswith("hangs__") for n in first.requests[0].tool_names)

        # The agent gives up on it after its connect bound.
        await _until(direct, "hangs", "error", timeout=CONNECT_S + MARGIN_S)

        # Turn 2: no wait; the failure is reported to the model and the user, once.
        second = _timed(ScriptedModel(), stamps, "two")
        chatd.models[chat.id] = second.build()
        began = time.monotonic()
        await chatd.send(chat.id, "again")
        chat = await chatd.wait_status(chat.id, timeout=30)
        assert chat.last_error is None, chat.last_error
        assert stamps[1] - began < 1.0 + MARGIN_S
        notice = second.requests[0].instructions or ""
        assert "<workspace-mcp>" in notice
        assert f"- hangs: timed out connecting after {CONNECT_S:g}s" in notice
        assert "echo__echo" in second.requests[0].tool_names
        notes = [m for m in await chatd.messages(chat.id) if m.role == "system"]
        assert len(notes) == 1 and notes[0].visibility == "user"
        assert "hangs" in notes[0].parts[0]["text"]

        # Turn 3: still no wait, no second report, no dial, the server not started again.
        dials = len(chatd.dialer.calls)
        third = _timed(ScriptedModel(), stamps, "three")
        chatd.models[chat.id] = third.build()
        began = time.monotonic()
        await chatd.send(chat.id, "and again")
        chat = await chatd.wait_status(chat.id, timeout=30)
        assert stamps[2] - began < 1.0 + MARGIN_S
        assert "<workspace-mcp>" not in (third.requests[0].instructions or "")
        assert len([m for m in await chatd.messages(chat.id) if m.role == "system"]) == 1
        assert len(chatd.dialer.calls) == dials
        assert starts.read_text().count("start") == 1

        # A .mcp.json change clears the negative cache: the next turn sees the new server.
        project = chatd.graph.backends["local"].workspace_dir(ws.id) / "home" / "project"
        config = {"mcpServers": {"echo": ECHO, "other": ECHO}}
        (project / ".mcp.json").write_text(json.dumps(config))
        await direct.mcp_tools(wait=0)
        await _until(direct, "other", "ok", timeout=CONNECT_S)
        fourth = ScriptedModel().call("other__echo", text="fixed").say("four")
        chatd.models[chat.id] = fourth.build()
        await chatd.send(chat.id, "fixed?")
        chat = await chatd.wait_status(chat.id, timeout=30)
        assert chat.last_error is None, chat.last_error
        assert "other__echo" in fourth.requests[0].tool_names
        [echoed] = await chatd.results(chat.id, "other__echo")
        assert echoed["result"] == "fixed"
        cache = worker.mcp_cache
        assert cache is not None
        entry = cache.entry(chat.id, agent.id)
        assert entry is not None and entry.settled  # steady state again: the fast path
    finally:
        await direct.aclose()
