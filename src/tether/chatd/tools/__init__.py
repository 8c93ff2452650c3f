"""The chat tools. :func:`build_tools` gives a chat's tool set: workspace tools for every
chat; lifecycle and subagent tools for root chats only (SA-4); read-only tools and the plan
file in plan mode (PL-9, ``planmode.py``)."""

from __future__ import annotations

from typing import Any

from pydantic_ai import Tool

from tether.chatd.tools.base import ToolContext
from tether.chatd.tools.lifecycle import lifecycle_tools
from tether.chatd.tools.planmode import plan_mode_tools
from tether.chatd.tools.subagents import subagent_tools
from tether.chatd.tools.workspace import workspace_tools


def build_tools(ctx: ToolContext) -> list[Tool[Any]]:
    tools = workspace_tools(ctx)
    if ctx.chat.is_root:
        tools += lifecycle_tools(ctx) + subagent_tools(ctx)
    if ctx.chat.plan_mode:
        tools = plan_mode_tools(ctx, tools)
    return tools
