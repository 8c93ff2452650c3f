"""A chat's tools and pydantic-ai agent, built once and reused by its later turns.

Building the ~17 tools (``Tool.from_schema`` copies each schema) and the ``Agent`` cost
about 2.5 ms of CPU per turn, more than a bare pydantic-ai run of a one-tool turn. The tools
close over a :class:`~tether.chatd.tools.base.ToolContext`; a chat runs one turn at a time,
so its cached context is re-pointed at each turn (the chat as of the turn start, the turn's
workspace-ready hook, a fresh pre-dial gate) instead of being rebuilt. What changes the tool
set — a root chat or a subagent (SA-4), plan mode (PL-9) — is the cache key; what is per
turn — the model, the workspace MCP toolset, the context budget — is given to ``Agent.iter``
(``steps.py``) or read through :class:`TurnAgent` every step.

The agent has one capability of its own (:class:`ChatTools`), which brings it both:

* the chat's toolset, as a wrapper of the agent's assembled toolset rather than through
  ``toolsets=``: pydantic-ai always combines its own (here empty) function toolset with the
  toolsets it is given, and with two it lists, prepares and collects instructions from them
  in an anyio task group per call — 7 task groups and 14 tasks per two-step turn, ≈ 0.35 ms
  of CPU (with one it awaits in place);
* the context budget (``chatd/context.py``) of the running turn, rather than a capability
  given to each run: pydantic-ai binds a run's capabilities and rebuilds its capability
  tree on every run (≈ 0.4 ms of CPU per turn), an agent's once. Every capability also
  costs a run-context copy per hook and step, so there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic_ai import Agent, Tool
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset, ToolsetTool, WrapperToolset

from tether.chatd.context import ContextBudget
from tether.chatd.tools import build_tools
from tether.chatd.tools.base import ChatdDeps, ChatState, ToolContext
from tether.chatd.turn.prepare import TurnWorkspace
from tether.domain.chat import Chat


class ChatToolset(FunctionToolset[None]):
    """The chat's tools and the running turn's workspace MCP tools (``extra()``, read at
    every step: tools primed mid-turn appear) as one toolset.

    One toolset instead of the chat's plus a dynamic one (a dynamic toolset is re-entered
    at every step). The chat's own tools have no ``prepare`` function, so their listing
    depends on the run's retry budget alone and is kept (``FunctionToolset`` rebuilds a run
    context and a tool per tool on every listing), return schemas already cleared. (A
    renaming wrapper's name path only reaches a tool's ``prepare``, so it does not matter.)
    """

    def __init__(
        self, tools: Sequence[Tool[None]], extra: Callable[[], FunctionToolset[None]]
    ) -> None:
        super().__init__(tools)
        self._extra = extra
        self._static = all(t.prepare is None for t in tools)
        self._listed: tuple[int, dict[str, ToolsetTool[None]]] | None = None

    async def get_tools(self, ctx: RunContext[None]) -> dict[str, ToolsetTool[None]]:
        listed = self._listed
        if listed is not None and listed[0] == ctx.max_retries:
            tools = dict(listed[1])
        else:
            tools = await super().get_tools(ctx)
            if self._static:
                tools = {name: _without_return_schema(tool) for name, tool in tools.items()}
                self._listed = (ctx.max_retries, dict(tools))
        extra = self._extra()
        if extra.tools:  # a workspace MCP tool never shadows a chat tool (mcptools.py)
            for name, tool in (await extra.get_tools(ctx)).items():
                tools.setdefault(name, tool)
        return tools

    def forget_listing(self) -> None:
        """Drop the kept listing: its tools refer back to this toolset (a reference cycle),
        so a dropped chat's tools would otherwise wait for a full collection."""
        self._listed = None

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one of the chat's tools or the turn's workspace MCP tools."""
        return name in self.tools or name in self._extra().tools

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[None], tool: ToolsetTool[None]
    ) -> Any:
        if tool.toolset is not self:  # a workspace MCP tool: its own toolset runs it
            return await tool.toolset.call_tool(name, tool_args, ctx, tool)
        return await super().call_tool(name, tool_args, ctx, tool)


@dataclass
class _WithChatTools(WrapperToolset[None]):
    """The agent's assembled toolset (its own function toolset: empty) with the chat's."""

    chat: ChatToolset

    async def get_tools(self, ctx: RunContext[None]) -> dict[str, ToolsetTool[None]]:
        tools = await self.chat.get_tools(ctx)
        for name, tool in (await self.wrapped.get_tools(ctx)).items():
            tools.setdefault(name, tool)  # a chat tool is never shadowed
        return tools

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[None], tool: ToolsetTool[None]
    ) -> Any:
        if self.chat.owns(name):
            return await self.chat.call_tool(name, tool_args, ctx, tool)
        return await self.wrapped.call_tool(name, tool_args, ctx, tool)


@dataclass
class ChatTools(AbstractCapability[None]):
    """The chat agent's one capability: the chat's toolset as a wrapper of the agent's
    assembled toolset, and the running turn's context budget (``context()``; None without
    a context window or between turns) measuring every model request (see the module
    docstring). The chat's tools go past pydantic-ai's ``prepare_tools`` capability hook,
    which none of the agent's capabilities implement (it sees the agent's own, empty,
    function toolset); capability toolset wrappers such as tool search still see them, as
    they wrap this one."""

    toolset: ChatToolset
    context: Callable[[], ContextBudget | None] = lambda: None

    def get_wrapper_toolset(self, toolset: AbstractToolset[None]) -> AbstractToolset[None]:
        return _WithChatTools(toolset, self.toolset)

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        budget = self.context()
        if budget is None:
            return request_context
        return await budget.before_model_request(ctx, request_context)

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None


def _without_return_schema(tool: ToolsetTool[None]) -> ToolsetTool[None]:
    """``tool`` as every model request sends it: a tool that did not opt in to its return
    schema has it cleared (pydantic-ai's ``prepare_return_schemas``, which otherwise
    copies every tool definition on every request to do so)."""
    tool_def = tool.tool_def
    if tool_def.include_return_schema or tool_def.return_schema is None:
        return tool
    return replace(tool, tool_def=replace(tool_def, return_schema=None))


AgentKey = tuple[bool, bool]  # (is_root, plan_mode): what decides the tool set


@dataclass
class TurnSlot:
    """What the kept agent reads of the running turn at every step: its workspace (the
    MCP toolset) and its context budget. The agent's callbacks hold this, not the
    :class:`TurnAgent` that holds the agent, so a dropped chat's tools and agent form no
    reference cycle and go by reference counting: a cycle would outlive the young
    collections and wait for a full one (``src/tether/gctune.py``), and a soak's
    forgotten chats piled up as garbage in the meantime."""

    turn_ws: TurnWorkspace = field(default_factory=TurnWorkspace)
    context: ContextBudget | None = None  # the running turn's (its model's window)


@dataclass
class TurnAgent:
    """One chat's tools and agent; ``turn_ws`` is the running turn's (set per turn)."""

    key: AgentKey
    ctx: ToolContext
    agent: Agent[None, str]
    taken: set[str]  # the tool names (a workspace MCP tool may not shadow one)
    slot: TurnSlot = field(default_factory=TurnSlot)
    built: int = 1  # how many times this chat's tools were built (tests read it)
    toolset: ChatToolset | None = None  # the agent's (its listing is dropped with it)

    @property
    def turn_ws(self) -> TurnWorkspace:
        return self.slot.turn_ws

    @turn_ws.setter
    def turn_ws(self, turn_ws: TurnWorkspace) -> None:
        self.slot.turn_ws = turn_ws

    @property
    def context(self) -> ContextBudget | None:
        return self.slot.context

    @context.setter
    def context(self, context: ContextBudget | None) -> None:
        self.slot.context = context


def forget_turn_agent(state: ChatState) -> None:
    """Drop the chat's kept tools and agent (the worker forgets the chat, or its tool set
    changed) so that reference counting frees them: a cycle through them would wait for a
    full collection, which the tuned collector runs rarely (``src/tether/gctune.py``), and
    meanwhile hold the chat's state, connections and ~17 tools with their validators."""
    cached, state.turn_agent = state.turn_agent, None
    if isinstance(cached, TurnAgent) and cached.toolset is not None:
        cached.toolset.forget_listing()


def turn_agent(deps: ChatdDeps, chat: Chat, state: ChatState) -> TurnAgent:
    """The chat's tools and agent for a new turn: the cached ones re-pointed at this turn,
    or new ones when the chat has none yet or its tool set changed."""
    key: AgentKey = (chat.is_root, chat.plan_mode)
    cached = state.turn_agent
    if isinstance(cached, TurnAgent) and cached.key == key and cached.ctx.deps is deps:
        ctx = cached.ctx
        ctx.chat = chat
        ctx.on_workspace_ready = None
        ctx.conns.forget_gate()  # as ToolContext() does: a fresh pre-dial gate per turn
        cached.turn_ws = TurnWorkspace()
        cached.context = None
        return cached
    forget_turn_agent(state)
    ctx = ToolContext(deps, chat, state)
    tools = build_tools(ctx)
    slot = TurnSlot()
    toolset = ChatToolset(tools, lambda: slot.turn_ws.toolset)
    tools_cap = ChatTools(toolset, lambda: slot.context)
    agent: Agent[None, str] = Agent(None, retries=3, capabilities=[tools_cap])
    built = cached.built + 1 if isinstance(cached, TurnAgent) else 1
    made = TurnAgent(key, ctx, agent, {t.name for t in tools}, slot, built, toolset)
    state.turn_agent = made
    return made
