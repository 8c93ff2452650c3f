"""Instruction files and workspace MCP tools in chat turns, against real agents
(docs/behaviour.md §5.5–§5.6; PL-10, PL-18, PL-2 and the build-event eviction of §4.7).

The template writes an ``AGENTS.md`` into the project directory from its startup script and
configures ``tests/fixtures/mcp_echo_server.py`` as the workspace's MCP server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic_ai import messages as pai

from tether.chatd import messages as cm
from tether.chatd.binding import AgentRow
from tether.llm.scripted import Call, Say, Step
from tether.testing.models import ScriptedModel

if TYPE_CHECKING:  # only an annotation: importing "conftest" at run time is ambiguous
    from chatd_env import Chatd

pytestmark = pytest.mark.integration

ECHO_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_echo_server.py"
RULE = "Always greet the user in Esperanto."


def _template() -> str:
    mcp = {"mcpServers": {"echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]}}}
    return f"""
name: withcontext
directory: project
backend: local
mcp: {json.dumps(mcp)}
startup_script: |
  set -eu
  mkdir -p "$HOME/project"
  cat > "$HOME/project/AGENTS.md" <<'MD'
  # Project rules
  <!-- a comment the model never sees -->
  {RULE}
  MD
agents:
  - name: main
    chat: true
"""


def _tool_returns(messages: list[Any]) -> list[pai.ToolReturnPart]:
    return [
        p
        for m in messages
        if isinstance(m, pai.ModelRequest)
        for p in m.parts
        if isinstance(p, pai.ToolReturnPart)
    ]


async def _use_template(chatd: Chatd) -> str:
    chatd.template_id = await chatd.push_template(_template())
    return str(chatd.template_id)


async def _warm_mcp(chatd: Chatd, agent: AgentRow) -> None:
    """Wait (asking the agent directly, up to its connect bound) until its MCP servers have
    connected: a cold server's tools may miss the first model call (it waits at most
    ``mcp_first_call_wait_s``) and join a later step."""
    direct = await chatd.dialer.inner.dial(agent, headers={})
    try:
        listing = await direct.mcp_tools()
        assert [s.status for s in listing.servers] == ["ok"], listing.servers
    finally:
        await direct.aclose()


async def test_pl10_agents_md_in_instructions_and_mcp_tool_callable(chatd: Chatd) -> None:
    await _use_template(chatd)
    ws, _ = await chatd.create_workspace()
    await _warm_mcp(chatd, await chatd.wait_agent_ready(ws.id))
    worker = chatd.start_worker()
    scripted = ScriptedModel().call("echo__echo", text="ping").say("done")
    chat = await chatd.new_chat("hello", scripted.build(), workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id, timeout=60)
    assert chat.last_error is None, chat.last_error

    first = scripted.requests[0]
    assert "echo__echo" in first.tool_names and "echo__add" in first.tool_names
    instructions = first.instructions or ""
    agent = await chatd.wait_agent_ready(ws.id)
    project = chatd.graph.backends["local"].workspace_dir(ws.id) / "home" / "project"
    # PL-10: the block's shape
    block = instructions[instructions.index("<workspace-context>") :]
    assert block.startswith("<workspace-context>\nOperating System: ")
    assert f"Working Directory: {project}\n" in block
    assert f"\nSource: {project / 'AGENTS.md'}\n# Project rules\n" in block
    assert RULE in block and "a comment" not in block
    assert block.endswith("</workspace-context>")
    [echo] = await chatd.results(chat.id, "echo__echo")
    assert echo["result"] == "ping" and not echo.get("is_error")
    # one persisted context message, stamped with the agent, hidden from the model
    context = [m for m in await chatd.messages(chat.id) if m.parts[0].get("type") == "context-file"]
    assert len(context) == 1 and context[0].visibility == "user"
    part = cm.load_parts(context[0].parts)[0]
    assert isinstance(part, cm.ContextFilePart) and part.agent_id == agent.id
    cache = worker.mcp_cache
    assert cache is not None and cache.get(chat.id, agent.id) is not None

    # PL-2 / PL-16: the next turn neither dials nor asks the agent for tools or files
    dials = len(chatd.dialer.calls)
    second = ScriptedModel().say("again")
    chatd.models[chat.id] = second.build()
    await chatd.send(chat.id, "again")
    chat = await chatd.wait_status(chat.id, timeout=30)
    assert chat.last_error is None
    assert len(chatd.dialer.calls) == dials
    assert "echo__echo" in second.requests[0].tool_names
    assert RULE in (second.requests[0].instructions or "")

    # a stop build evicts the chat's MCP entry at once (docs/behaviour.md §4.7)
    await chatd.stop_workspace(ws.id)
    async with asyncio.timeout(5):
        while True:  # the worker handles the event on its own task
            if chat.id not in cache:
                break
            await asyncio.sleep(0.02)


async def test_pl18_create_workspace_mid_turn_injects_instructions_and_tools(
    chatd: Chatd,
) -> None:
    template_id = await _use_template(chatd)
    chatd.start_worker()
    # per_turn=False: pydantic-ai announces tools that appear mid-run with a "<system>" user
    # prompt, which a per-turn script would take for a new user turn.
    scripted = ScriptedModel(per_turn=False).call(
        "create_workspace", template_id=template_id, name="ctx"
    )

    def echo_when_there(messages: list[Any]) -> Step:
        """A cold MCP server's tools join at a later step: wait for them (bounded)."""
        if any(p.tool_name == "echo__echo" for p in _tool_returns(messages)):
            return Say("done")
        if "echo__echo" in scripted.requests[-1].tool_names:
            return Call("echo__echo", {"text": "mid-turn"})
        return Call("execute", {"command": "sleep 0.5"})

    for _ in range(40):
        scripted.then(echo_when_there)
    chat = await chatd.run_chat("make me a workspace", scripted.build(), timeout=90)
    assert chat.last_error is None, chat.last_error
    [created] = await chatd.results(chat.id, "create_workspace")
    assert created["result"]["created"] is True, created
    before, after = scripted.requests[0], scripted.requests[1]
    assert "<workspace-context>" not in (before.instructions or "")
    assert "echo__echo" not in before.tool_names
    assert RULE in (after.instructions or "")  # the step after create_workspace sees AGENTS.md
    assert any("echo__echo" in r.tool_names for r in scripted.requests)  # ... and MCP tools
    [echo] = await chatd.results(chat.id, "echo__echo")
    assert echo["result"] == "mid-turn"
    stored = [m for m in await chatd.messages(chat.id) if m.parts[0].get("type") == "context-file"]
    assert len(stored) == 1 and stored[0].parts[0]["agent_id"] == str(chat.agent_id)
