"""A chat's tools and pydantic-ai agent: built once per kind of chat and shared by the
worker's chats (:class:`ChatAgents`), each chat keeping its own context across its turns.

Building the ~17 tools (``Tool.from_schema`` copies each schema) and the ``Agent`` cost
about 2.5 ms of CPU per turn, more than a bare pydantic-ai run of a one-tool turn; kept per
chat they cost the garbage collector instead (see :class:`ChatAgents`). The shared tools
close over a stand-in for the running turn's :class:`~tether.chatd.tools.base.ToolContext`
(a context variable each turn sets); a chat runs one turn at a time, so its own cached
context is re-pointed at each turn (the chat as of the turn start, the turn's
workspace-ready hook, a fresh pre-dial gate) instead of being rebuilt. What changes the tool
set — a root chat or a subagent (SA-4), plan mode (PL-9: tools of the chat's own) — is the
cache key; what is per turn — the model, the workspace MCP toolset, the context budget — is
given to ``Agent.iter`` (``steps.py``) or read through the running :class:`TurnAgent` every
step.

The agent has one capability of its own (:class:`ChatTools`), which brings it:

* the chat's toolset, as a wrapper of the agent's assembled toolset rather than through
  ``toolsets=``: pydantic-ai always combines its own (here empty) function toolset with the
  toolsets it is given, and with two it lists, prepares and collects instructions from them
  in an anyio task group per call — 7 task groups and 14 tasks per two-step turn, ≈ 0.35 ms
  of CPU (with one it awaits in place);
* the context budget (``chatd/context.py``) of the running turn, rather than a capability
  given to each run: pydantic-ai binds a run's capabilities and rebuilds its capability
  tree on every run (≈ 0.4 ms of CPU per turn), an agent's once. Every capability also
  costs a run-context copy per hook and step, so there is one;
* and it is the agent's tool search: pydantic-ai gives an agent without a ``ToolSearch``
  one of its own, which costs what any capability does — a run-context copy per hook, an
  event-stream wrapper per streamed node, a task per run start (issue #12: 120 → 82 copies
  and 97 → 65 wrapper steps per turn of ``bench/turns.py``). :class:`ChatTools` subclasses
  ``ToolSearch`` and keeps what it does (its toolset wrapper around the chat's tools, its
  native tool and its request hook), so the agent holds it and pydantic-ai's pending-message
  drain only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, cast

from pydantic_ai import Agent, Tool
from pydantic_ai.capabilities import ToolSearch
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
class ChatTools(ToolSearch[None]):
    """The chat agent's one capability: the chat's toolset as a wrapper of the agent's
    assembled toolset, and the running turn's context budget (``context()``; None without
    a context window or between turns) measuring every model request (see the module
    docstring). The chat's tools go past pydantic-ai's ``prepare_tools`` capability hook,
    which none of the agent's capabilities implement (it sees the agent's own, empty,
    function toolset); tool search (this capability's ``ToolSearch`` part) still sees them,
    as it wraps them. Tether marks no tool ``defer_loading``; one so marked would be hidden
    and found as with pydantic-ai's own ``ToolSearch``.

    Being the agent's ``ToolSearch`` places its hooks outermost (``ToolSearch``'s ordering)
    where they ran innermost: the budget now measures a request before pydantic-ai's
    pending-message drain adds to it — which adds nothing here, as tether queues its
    messages in its own database (``db/chatqueue.py``), never through pydantic-ai."""

    toolset: ChatToolset = field(kw_only=True)
    context: Callable[[], ContextBudget | None] = field(kw_only=True, default=lambda: None)

    def get_wrapper_toolset(self, toolset: AbstractToolset[None]) -> AbstractToolset[None]:
        return super().get_wrapper_toolset(_WithChatTools(toolset, self.toolset))

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        request_context = await super().before_model_request(ctx, request_context)
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
    """What an agent of a chat's own reads of the running turn at every step: its
    workspace (the MCP toolset) and its context budget. The agent's callbacks hold this, not
    the :class:`TurnAgent` that holds the agent, so a dropped chat's tools and agent form no
    reference cycle and go by reference counting: a cycle would outlive the young
    collections and wait for a full one (``src/tether/gctune.py``), and a soak's
    forgotten chats piled up as garbage in the meantime."""

    turn_ws: TurnWorkspace = field(default_factory=TurnWorkspace)
    context: ContextBudget | None = None  # the running turn's (its model's window)


@dataclass
class TurnAgent:
    """One chat's tools and agent; ``turn_ws`` and ``context`` are the running turn's (set
    per turn). ``agent`` and ``taken`` are shared with the worker's other chats of the same
    kind (:class:`ChatAgents`) unless the chat has tools of its own (plan mode, or no
    ``shared`` given), whose ``toolset`` it then keeps."""

    key: AgentKey
    ctx: ToolContext
    agent: Agent[None, str] = field(init=False)
    taken: set[str] = field(init=False)  # the tool names (a workspace MCP tool may not shadow one)
    slot: TurnSlot = field(default_factory=TurnSlot)
    built: int = 1  # how many times this chat's tools were (re)selected (tests read it)
    toolset: ChatToolset | None = None  # its own tools' (plan mode): the listing goes with it

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
    """Drop the chat's kept turn agent (the worker forgets the chat, or its tool set
    changed) so that reference counting frees it and, for tools of its own, them: a cycle
    through them would wait for a full collection, which the tuned collector runs rarely
    (``src/tether/gctune.py``), and meanwhile hold the chat's state and connections."""
    cached, state.turn_agent = state.turn_agent, None
    if isinstance(cached, TurnAgent) and cached.toolset is not None:
        cached.toolset.forget_listing()


# The chat turn running in this task (and in the tasks it starts, which copy the context):
# what the shared tools and agents act on (:class:`ChatAgents`).
_running: ContextVar[TurnAgent | None] = ContextVar("tether_turn_agent", default=None)


def running_turn() -> TurnAgent:
    """The chat turn running in this task; RuntimeError outside one."""
    turn = _running.get()
    if turn is None:
        raise RuntimeError("no chat turn is running in this task")
    return turn


class _RunningToolContext:
    """Stands for the :class:`ToolContext` of the turn running in this task: the shared
    tools close over it, so one set of tools serves every chat, each call acting on the
    chat whose turn made it (attributes are read and written through to that context)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(running_turn().ctx, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(running_turn().ctx, name, value)


@contextmanager
def running(turn: TurnAgent) -> Iterator[None]:
    """Make ``turn`` the running turn of this task (and of the tasks it starts) for the
    block: what the shared tools act on."""
    token = _running.set(turn)
    try:
        yield
    finally:
        _running.reset(token)


def _build(
    tool_ctx: ToolContext, slot: Callable[[], TurnSlot]
) -> tuple[Agent[None, str], set[str], ChatToolset]:
    """Tools over ``tool_ctx`` and an agent with them; its toolset's workspace MCP tools
    and its context budget are read from ``slot()`` at every step: a chat's own slot (tools
    of its own) or the running turn's (shared tools)."""
    tools = build_tools(tool_ctx)
    toolset = ChatToolset(tools, lambda: slot().turn_ws.toolset)
    tools_cap = ChatTools(toolset=toolset, context=lambda: slot().context)
    agent: Agent[None, str] = Agent(None, retries=3, capabilities=[tools_cap])
    return agent, {t.name for t in tools}, toolset


def _running_slot() -> TurnSlot:
    return running_turn().slot


class ChatAgents:
    """The tools and agents a worker's chats share: one per chat kind (a root chat or a
    subagent, SA-4), built at the first turn of that kind.

    Why shared (issue #12, ``bench/openloop.py --heap --stalls``): a chat's ~17 tools and
    its agent are ≈ 500 objects the garbage collector tracks, kept while the chat is
    cached (``chat_idle_s``); with 1,000 chats that is half a million objects, and every
    full collection walks them all on the event loop — a stall of hundreds of
    milliseconds for every turn and stream in flight. Shared, the tools close over a
    stand-in for the running turn's context (:class:`_RunningToolContext`, through a
    context variable the turn sets) and a chat keeps only its own context. Plan mode's
    tools name the chat's plan file (PL-9), so a chat in plan mode builds its own."""

    def __init__(self) -> None:
        self._shared: dict[bool, tuple[ChatdDeps, Agent[None, str], set[str]]] = {}

    def for_chat(self, deps: ChatdDeps, is_root: bool) -> tuple[Agent[None, str], set[str]]:
        shared = self._shared.get(is_root)
        if shared is None or shared[0] is not deps:
            agent, taken, _ = _build(cast(ToolContext, _RunningToolContext()), _running_slot)
            shared = self._shared[is_root] = (deps, agent, taken)
        return shared[1], shared[2]


def turn_agent(
    deps: ChatdDeps, chat: Chat, state: ChatState, shared: ChatAgents | None = None
) -> TurnAgent:
    """The chat's tools and agent for a new turn: the cached ones re-pointed at this turn,
    or new ones when the chat has none yet or its tool set changed (the shared ones of
    ``shared`` unless in plan mode). The turn runs them inside :func:`running`."""
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
    built = cached.built + 1 if isinstance(cached, TurnAgent) else 1
    made = TurnAgent(key, ctx, built=built)
    if shared is None or chat.plan_mode:
        slot = made.slot  # not ``made``: the agent's callbacks must not lead back to it
        made.agent, made.taken, made.toolset = _build(ctx, lambda: slot)
    else:
        with running(made):  # the build reads the chat's kind through the stand-in
            made.agent, made.taken = shared.for_chat(deps, chat.is_root)
    state.turn_agent = made
    return made
