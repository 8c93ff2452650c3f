"""The system prompt of a turn (docs/behaviour.md §3.2), in the reference's order: tether's
own prompt and the admin system prompt, the subagent instruction (child chats), the
workspace instruction block, the skill index, the admin user prompt in a
``<user-instructions>`` tag, then the plan-mode overlay and the MCP notice.

The admin prompts (``db/chatconfig.py``) are read once per turn with the other pre-LLM
steps; a failed read leaves them out of that turn rather than failing it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tether.chatd.tools.base import ChatdDeps
from tether.chatd.tools.planmode import plan_prompt
from tether.db.chatconfig import ChatConfig
from tether.domain.chat import Chat

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are tether, a coding agent working inside the user's workspace (a development "
    "environment). Use the tools to inspect and change files and run commands; prefer "
    "read_file/write_file/edit_files over shell tricks. If no workspace is bound, find a "
    "template with list_templates and call create_workspace. When a tool returns an error "
    "with a remediation, follow it or tell the user. Be concise."
)
SUBAGENT_PROMPT = (
    "You are a subagent started by another chat. Do the task you were given and answer with "
    "a short report; you cannot create, start or stop workspaces or start subagents."
)


@dataclass(frozen=True)
class TurnPrompt:
    """What the system prompt of one turn is built from, apart from the workspace."""

    chat: Chat
    config: ChatConfig

    @classmethod
    async def load(cls, deps: ChatdDeps, chat: Chat) -> TurnPrompt:
        try:
            config = await deps.chat_config()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the admin prompts must never fail a turn
            log.warning("chat %s: could not read the chat settings: %s", chat.id, err)
            config = ChatConfig()
        return cls(chat, config)

    def render(self, block: str = "", skills: str = "", mcp_notice: str = "") -> str:
        parts = [SYSTEM_PROMPT]
        if self.config.system_prompt.strip():
            parts.append(self.config.system_prompt.strip())
        if not self.chat.is_root:
            parts.append(SUBAGENT_PROMPT)
        if block:
            parts.append(block)
        if skills:
            parts.append(skills)
        if self.config.user_prompt.strip():
            parts.append(
                f"<user-instructions>\n{self.config.user_prompt.strip()}\n</user-instructions>"
            )
        if self.chat.plan_mode:
            parts.append(plan_prompt(self.chat.id))
        if mcp_notice:
            parts.append(mcp_notice)
        return "\n\n".join(parts)
