"""Plan mode, skills, the template allowlist and the admin prompts in chat turns, against
real agents (docs/behaviour.md §5.6–§5.8; PL-9, PL-12, PL-13, SA-2, CW-24).

The template's startup script writes the workspace's skills (one valid, one whose name does
not match its directory) and configures the echo MCP server, so a plan-mode turn can show
that MCP tools are not discovered."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tether.chatd import messages as cm
from tether.chatd.tools.planmode import plan_path
from tether.db.chatconfig import ChatConfigStore
from tether.llm.scripted import Call, Say, Then, last_result, script_model
from tether.testing.models import ScriptedModel

if TYPE_CHECKING:  # only an annotation: importing "conftest" at run time is ambiguous
    from chatd_env import Chatd

pytestmark = pytest.mark.integration

ECHO_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_echo_server.py"
WRITE_TOOLS = {
    "execute",
    "edit_files",
    "process_signal",
    "create_workspace",
    "start_workspace",
    "stop_workspace",
}


def _template(name: str = "withskills") -> str:
    mcp = {"mcpServers": {"echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]}}}
    return f"""
name: {name}
directory: project
backend: local
mcp: {json.dumps(mcp)}
startup_script: |
  set -eu
  mkdir -p "$HOME/project/.agents/skills/deploy-app" "$HOME/project/.agents/skills/Bad"
  cat > "$HOME/project/.agents/skills/deploy-app/SKILL.md" <<'MD'
  ---
  name: deploy-app
  description: "How to deploy the app <!-- hidden -->"
  ---
  Run make deploy.
  MD
  cat > "$HOME/project/.agents/skills/Bad/SKILL.md" <<'MD'
  ---
  name: other-name
  description: poses as another skill
  ---
  MD
agents:
  - name: main
    chat: true
"""


async def _use_template(chatd: Chatd) -> None:
    chatd.template_id = await chatd.push_template(_template())


async def test_pl9_plan_mode_turn_is_read_only_and_writes_only_the_plan_file(
    chatd: Chatd,
) -> None:
    await _use_template(chatd)
    ws, _ = await chatd.create_workspace()
    home = chatd.graph.backends["local"].home(ws.id)
    chatd.start_worker()
    chat_id: list[uuid.UUID] = []

    def write_plan(_: list[Any]) -> Call:
        return Call("write_file", {"path": plan_path(chat_id[0]), "content": "# Plan\n1. x\n"})

    model = ScriptedModel(
        steps=[
            Call("write_file", {"path": "~/escape.txt", "content": "no"}),
            Call("write_file", {"path": "project/../.tether/plans/x.md", "content": "no"}),
            Then(write_plan),
            Call("read_file", {"path": ".agents/skills/deploy-app/SKILL.md"}),
            Say("planned"),
        ]
    )
    chat = await chatd.new_chat("plan it", model.build(), workspace_id=ws.id, plan_mode=True)
    chat_id.append(chat.id)
    chat = await chatd.wait_status(chat.id, timeout=60)
    assert chat.last_error is None and chat.plan_mode
    first = model.requests[0]
    tools = set(first.tool_names)
    assert not tools & WRITE_TOOLS
    assert {"read_file", "list_dir", "write_file", "list_templates", "spawn_agent"} <= tools
    assert not [n for n in tools if "__" in n]  # no workspace MCP discovery
    assert plan_path(chat.id) in (first.instructions or "")
    escaped, sideways, plan, read = await chatd.results(chat.id)
    assert escaped["is_error"] and escaped["error_code"] == "forbidden"
    assert sideways["is_error"] and sideways["error_code"] == "forbidden"
    assert not plan.get("is_error"), plan
    assert not read.get("is_error") and "make deploy" in json.dumps(read["result"])
    assert (home / ".tether" / "plans" / f"{chat.id}.md").read_text() == "# Plan\n1. x\n"
    assert not (home / "escape.txt").exists()
    assert not (home / ".tether" / "plans" / "x.md").exists()


async def test_plan_mode_off_by_message_gives_the_tools_back(chatd: Chatd) -> None:
    chatd.start_worker()
    model = ScriptedModel(steps=[Say("planning")])
    chat = await chatd.new_chat("plan", model.build(), plan_mode=True)
    await chatd.wait_status(chat.id)
    await chatd.chats.set_fields(chat.id, plan_mode=False)
    later = ScriptedModel(steps=[Say("doing")])
    chatd.models[chat.id] = later.build()
    await chatd.send(chat.id, "now do it")
    await chatd.wait_status(chat.id)
    assert not set(model.requests[0].tool_names) & WRITE_TOOLS
    assert WRITE_TOOLS <= set(later.requests[0].tool_names)


async def test_sa2_child_copies_plan_mode(chatd: Chatd) -> None:
    chatd.start_worker()
    child_model = ScriptedModel(steps=[Say("child plan")])

    def wait(messages: list[Any]) -> Call:
        spawned = last_result(messages, "spawn_agent")
        assert spawned is not None
        return Call("wait_agent", {"chat_id": spawned.value["chat_id"], "timeout_seconds": 30})

    parent = await chatd.new_chat(
        "plan",
        script_model([Call("spawn_agent", {"prompt": "look around"}), Then(wait), Say("ok")]),
        plan_mode=True,
    )
    chatd.child_models[parent.id] = child_model.build()
    parent = await chatd.wait_status(parent.id, timeout=30)
    [spawned] = await chatd.results(parent.id, "spawn_agent")
    child = await chatd.chats.get(uuid.UUID(spawned["result"]["chat_id"]))
    assert child.plan_mode
    assert not set(child_model.requests[0].tool_names) & WRITE_TOOLS
    assert plan_path(child.id) in (child_model.requests[0].instructions or "")


async def test_pl12_skills_persisted_with_the_marker_and_offered(chatd: Chatd) -> None:
    await _use_template(chatd)
    ws, _ = await chatd.create_workspace()
    chatd.start_worker()
    model = ScriptedModel(steps=[Say("first")])
    chat = await chatd.new_chat("hi", model.build(), workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id, timeout=60)
    first = model.requests[0].instructions or ""
    assert "<available-skills>" in first and "deploy-app: How to deploy the app" in first
    assert "deploy-app/SKILL.md" in first and "other-name" not in first and "hidden" not in first
    # one message: the blank marker (the workspace has no AGENTS.md) and the skill part
    [context] = [
        m for m in await chatd.messages(chat.id) if any(p["type"] == "skill" for p in m.parts)
    ]
    marker, skill = cm.load_parts(context.parts)
    assert isinstance(marker, cm.ContextFilePart) and marker.path is None
    assert marker.agent_id == chat.agent_id
    assert isinstance(skill, cm.SkillPart) and skill.name == "deploy-app"
    assert skill.agent_id == chat.agent_id
    assert chat.last_injected_context == [context.parts[1]]  # the skill part only
    # later turns rebuild the index from history: no second read, same index
    await chatd.send(chat.id, "again")
    await chatd.wait_status(chat.id)
    assert "deploy-app: How to deploy the app" in (model.requests[-1].instructions or "")
    assert len([m for m in await chatd.messages(chat.id) if m.visibility == "user"]) == 1


BARE = """
name: bare
directory: project
backend: local
startup_script: mkdir -p "$HOME/project"
agents:
  - name: main
    chat: true
"""


async def test_pl13_nothing_found_leaves_last_injected_context_null(chatd: Chatd) -> None:
    chatd.template_id = await chatd.push_template(BARE)  # no AGENTS.md, no skills
    ws, _ = await chatd.create_workspace()
    chatd.start_worker()
    model = ScriptedModel(steps=[Say("ok")])
    chat = await chatd.new_chat("hi", model.build(), workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id, timeout=60)
    [context] = [
        m
        for m in await chatd.messages(chat.id)
        if any(p["type"] == "context-file" for p in m.parts)
    ]
    [marker] = cm.load_parts(context.parts)
    assert isinstance(marker, cm.ContextFilePart) and marker.path is None
    assert marker.agent_id == chat.agent_id
    assert chat.last_injected_context is None
    assert "<available-skills>" not in (model.requests[0].instructions or "")


async def test_found_files_leave_a_stripped_copy_in_last_injected_context(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()  # the default template writes an AGENTS.md
    chatd.start_worker()
    chat = await chatd.new_chat("hi", script_model([Say("ok")]), workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id, timeout=60)
    [injected] = chat.last_injected_context or []
    assert injected["type"] == "context-file" and injected["path"].endswith("AGENTS.md")
    assert injected["content"] == "" and injected["agent_id"] == str(chat.agent_id)


async def test_cw24_template_allowlist_limits_what_chats_see(chatd: Chatd) -> None:
    hidden = chatd.template_id
    allowed = await chatd.push_template(_template("allowed"))
    config = ChatConfigStore(chatd.graph.engine, chatd.graph.clock, chatd.graph.bus)
    await config.set_template_allowlist([allowed])
    chatd.start_worker()
    model = ScriptedModel(
        steps=[
            Call("list_templates", {}),
            Call("read_template", {"template_id": str(hidden)}),
            Call("create_workspace", {"template_id": str(hidden)}),
            Call("read_template", {"template_id": str(allowed)}),
            Say("done"),
        ]
    )
    chat = await chatd.run_chat("which templates?", model.build())
    listed, read_hidden, create_hidden, read_allowed = await chatd.results(chat.id)
    assert [t["id"] for t in listed["result"]["templates"]] == [str(allowed)]
    assert listed["result"]["total_count"] == 1
    for denied in (read_hidden, create_hidden):
        assert denied["is_error"] and denied["error_code"] == "forbidden"
        assert "not allowlisted" in denied["result"]
    assert not read_allowed.get("is_error")
    assert (await chatd.chats.get(chat.id)).workspace_id is None
    # an empty allowlist allows every template again
    await config.set_template_allowlist([])
    again = ScriptedModel(steps=[Call("list_templates", {}), Say("ok")])
    chat = await chatd.run_chat("again", again.build())
    [listed] = await chatd.results(chat.id, "list_templates")
    assert {str(hidden), str(allowed)} <= {t["id"] for t in listed["result"]["templates"]}


async def test_admin_prompts_reach_every_chat_in_order(chatd: Chatd) -> None:
    config = ChatConfigStore(chatd.graph.engine, chatd.graph.clock, chatd.graph.bus)
    await config.set_system_prompt("Always answer in French.")
    await config.set_user_prompt("I prefer short answers.")
    chatd.start_worker()
    model = ScriptedModel(steps=[Say("ok")])
    chat = await chatd.new_chat("hi", model.build(), plan_mode=True)
    await chatd.wait_status(chat.id)
    prompt = model.requests[0].instructions or ""
    system = prompt.index("Always answer in French.")
    user = prompt.index("<user-instructions>\nI prefer short answers.\n</user-instructions>")
    plan = prompt.index("Plan mode is on")
    assert prompt.index("You are tether") < system < user < plan
    # a change applies from the next turn on; an empty prompt is left out
    await config.set_system_prompt("")
    later = ScriptedModel(steps=[Say("ok")])
    await chatd.run_chat("hi", later.build())
    assert "French" not in (later.requests[0].instructions or "")
