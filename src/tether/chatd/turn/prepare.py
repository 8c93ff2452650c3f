"""The turn's pre-LLM setup (docs/behaviour.md §3.2): the history and the instruction files
in parallel with workspace MCP discovery and the admin prompt, each bounded and unable to
fail the turn; and the same again mid-turn when a lifecycle tool binds a ready workspace."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic_ai.toolsets import FunctionToolset

from tether.agent.schemas import McpTool
from tether.chatd import history as history_mod
from tether.chatd import messages as cm
from tether.chatd.compaction import LongChat
from tether.chatd.context import Calibration, TurnBudget
from tether.chatd.elision import View
from tether.chatd.historycache import stored_to_chat
from tether.chatd.mcptools import McpDiscovery, mcp_tools
from tether.chatd.mcpturn import McpTurn
from tether.chatd.prompts import TurnPrompt
from tether.chatd.tools.base import ChatdDeps, ToolContext
from tether.domain.chat import Chat


class Instructions(Protocol):
    """The instruction-files step (``tether.chatd.instructions.InstructionFiles``)."""

    async def block(self, ctx: ToolContext, history: Sequence[cm.ChatMessage]) -> str: ...


@dataclass
class TurnWorkspace:
    """What the pre-LLM setup found for this turn; replaced mid-turn when a lifecycle tool
    binds a ready workspace (the instructions and toolset are re-read every step)."""

    block: str = ""
    toolset: FunctionToolset[None] = field(default_factory=FunctionToolset)
    mcp_names: tuple[str, ...] = ()
    mcp: McpTurn | None = None  # late MCP tools and the failure notice (mcpturn.py)
    prompt: TurnPrompt | None = None  # admin prompts and plan mode (prompts.py)
    view: View | None = None  # the history in force (elision.py)
    budget: TurnBudget = field(default_factory=lambda: TurnBudget(Calibration()))


class TurnSetup:
    """The pre-LLM steps of every turn. ``instructions`` reads the workspace's instruction
    files into the system prompt (without it the block is rebuilt from persisted
    context-file parts); ``mcp`` discovers the workspace MCP tools."""

    def __init__(
        self,
        deps: ChatdDeps,
        *,
        longchat: LongChat | None,
        instructions: Instructions | None,
        mcp: McpDiscovery | None,
    ) -> None:
        self.deps = deps
        self.long = longchat
        self.mcp = mcp
        self._instructions = instructions

    async def prepare(
        self, ctx: ToolContext, turn_ws: TurnWorkspace
    ) -> tuple[list[cm.ChatMessage], str, list[McpTool]]:
        """The history, the instruction block and the MCP tools, found in parallel."""

        async def prompt() -> tuple[list[cm.ChatMessage], str]:
            state = ctx.state
            known = state.compaction_number, state.last_seq
            state.compaction_number = state.last_seq = None  # once: as of the claim
            history = await history_mod.after_takeover(
                self.deps.chats,
                self.deps.hub,
                ctx.chat.id,
                await self.history(ctx.chat, turn_ws, *known),
                clean_through=ctx.state.clean_through,
            )
            return history, await self.block(ctx, history)

        async def admin_prompt() -> None:
            turn_ws.prompt = await TurnPrompt.load(self.deps, ctx.chat)

        async with asyncio.TaskGroup() as tg:
            mcp_task = tg.create_task(self.discover(turn_ws))
            prompt_task = tg.create_task(prompt())
            tg.create_task(admin_prompt())
        history, block = prompt_task.result()
        return history, block, mcp_task.result()

    async def workspace_ready(
        self, ctx: ToolContext, turn_ws: TurnWorkspace, taken: set[str]
    ) -> None:
        """Mid-turn (PL-18): a lifecycle tool bound a workspace whose agent is ready."""
        history = await self.history(ctx.chat, turn_ws)
        turn_ws.block = await self.block(ctx, history)
        self.set_mcp(ctx, turn_ws, await self.discover(turn_ws), taken)

    async def history(
        self,
        chat: Chat,
        turn_ws: TurnWorkspace,
        known_number: int | None = None,
        known_last_seq: int | None = None,
    ) -> list[cm.ChatMessage]:
        if self.long is not None:  # since the last compaction, read incrementally
            turn_ws.view = await self.long.view(
                chat.id, known_number=known_number, known_last_seq=known_last_seq
            )
            turn_ws.budget.calibration = turn_ws.view.calibration
            return turn_ws.view.history
        return [stored_to_chat(m) for m in await self.deps.chats.messages(chat.id)]

    async def block(self, ctx: ToolContext, history: list[cm.ChatMessage]) -> str:
        if self._instructions is None:
            return cm.workspace_context_from_history(history)
        return await self._instructions.block(ctx, history)

    async def discover(self, turn_ws: TurnWorkspace) -> list[McpTool]:
        if turn_ws.mcp is None:
            return []
        return await turn_ws.mcp.discover()

    def set_mcp(
        self, ctx: ToolContext, turn_ws: TurnWorkspace, specs: list[McpTool], taken: set[str]
    ) -> None:
        """The turn's workspace MCP toolset (kept when the tool names did not change)."""
        names = tuple(s.name for s in specs)
        if names == turn_ws.mcp_names or self.mcp is None:
            return
        turn_ws.toolset = FunctionToolset(mcp_tools(ctx, specs, self.mcp.cache, taken=taken))
        turn_ws.mcp_names = names
