"""Plan-mode tool filtering and the plan-file path check (PL-9), the skill index and the
``last_injected_context`` copy (PL-12, PL-13), and the system prompt's order (§5.8)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support.chats import make_chat
from tether.agent.schemas import Instructions, Skill
from tether.chatd import messages as cm
from tether.chatd.prompts import SUBAGENT_PROMPT, SYSTEM_PROMPT, TurnPrompt
from tether.chatd.skills import last_injected, skill_index, skill_parts, skills_of_agent
from tether.chatd.tools.planmode import WRITE_TOOLS, is_plan_path, plan_path
from tether.db.chatconfig import ChatConfig
from tether.domain.chat import Chat

CHAT = uuid.UUID(int=7)
AGENT = uuid.UUID(int=9)


def _chat(**changes: Any) -> Chat:
    return make_chat(CHAT, **changes)


@pytest.mark.parametrize(
    "path",
    [
        f"~/.tether/plans/{CHAT}.md",
        f"  ~/.tether/plans/{CHAT}.md ",
        f"~/.tether/plans/other/../{CHAT}.md",
        f"~/.tether//plans/./{CHAT}.md",
    ],
)
def test_pl9_the_plan_file_in_any_spelling(path: str) -> None:
    assert is_plan_path(CHAT, path)


@pytest.mark.parametrize(
    "path",
    [
        f"~/.tether/plans/{CHAT}.md/../../../.bashrc",
        f"~/.tether/plans/{uuid.UUID(int=8)}.md",
        f"/home/coder/.tether/plans/{CHAT}.md",  # only the ~ spelling: the agent resolves it
        f"project/~/.tether/plans/{CHAT}.md",
        f"~/.tether/plans/{CHAT}.md.sh",
        "~",
        "",
    ],
)
def test_pl9_anything_else_is_not_the_plan_file(path: str) -> None:
    assert not is_plan_path(CHAT, path)


def test_pl9_write_tools_cover_every_tool_that_changes_a_workspace() -> None:
    assert plan_path(CHAT) == f"~/.tether/plans/{CHAT}.md"
    assert {"execute", "edit_files", "process_signal", "write_file"} <= WRITE_TOOLS
    assert {"create_workspace", "start_workspace", "stop_workspace"} <= WRITE_TOOLS
    assert not {"read_file", "list_dir", "process_list", "list_templates"} & WRITE_TOOLS


def _info(*names: str) -> Instructions:
    skills = [
        Skill(name=n, description=f"does {n}", directory=f"/p/.agents/skills/{n}", path="")
        for n in names
    ]
    return Instructions(os="linux", directory="/p", files=[], skills=skills)


def test_pl12_skill_parts_index_and_last_injected() -> None:
    parts = skill_parts(_info("a-skill", "b-skill"), AGENT)
    assert [p.agent_id for p in parts] == [AGENT, AGENT]
    index = skill_index(parts)
    assert index.startswith("<available-skills>") and index.endswith("</available-skills>")
    assert "- a-skill: does a-skill (file: /p/.agents/skills/a-skill/SKILL.md)" in index
    marker = cm.ContextFilePart(agent_id=AGENT, os="linux", directory="/p")
    assert last_injected([marker], parts) == cm.dump_parts(parts)  # the marker is not copied
    # skill parts never reach the model as messages
    history = [cm.ChatMessage(role="user", parts=[marker, *parts], visibility="user")]
    assert cm.to_model_messages(history) == []
    # rebuilt from history: this agent's only, de-duplicated
    other = skill_parts(_info("c-skill"), uuid.UUID(int=10))
    history.append(cm.ChatMessage(role="user", parts=[*parts, *other], visibility="user"))
    assert skills_of_agent(history, AGENT) == parts


def test_pl13_nothing_found_is_null_and_files_lose_their_content() -> None:
    marker = cm.ContextFilePart(agent_id=AGENT, os="linux", directory="/p")
    assert last_injected([marker], []) is None
    assert skill_index([]) == ""
    found = cm.ContextFilePart(path="/p/AGENTS.md", content="rules", agent_id=AGENT)
    [copy] = last_injected([found], []) or []
    assert copy["path"] == "/p/AGENTS.md" and copy["content"] == ""


def test_system_prompt_order_and_empty_settings_left_out() -> None:
    config = ChatConfig(system_prompt="ADMIN", user_prompt="USER")
    child = _chat(parent_chat_id=uuid.UUID(int=2), plan_mode=True)
    text = TurnPrompt(child, config).render("BLOCK", "SKILLS", mcp_notice="NOTICE")
    order = [
        SYSTEM_PROMPT,
        "ADMIN",
        SUBAGENT_PROMPT,
        "BLOCK",
        "SKILLS",
        "<user-instructions>\nUSER\n</user-instructions>",
        plan_path(CHAT),
        "NOTICE",
    ]
    positions = [text.index(p) for p in order]
    assert positions == sorted(positions)
    assert TurnPrompt(_chat(), ChatConfig(system_prompt="  ")).render() == SYSTEM_PROMPT
