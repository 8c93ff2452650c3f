"""Pre-LLM workspace setup without sockets (docs/behaviour.md §9.4 PL rows): workspace MCP discovery
and its cache, MCP tool calls, instruction files, and whole turns on the fake binding store
and fake dialer."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic_ai.exceptions import ToolFailed

from support.chats import make_chat
from tether.agent.schemas import (
    InstructionFile,
    Instructions,
    McpCallResult,
    McpContent,
    McpServerStatus,
    McpTool,
    McpToolList,
)
from tether.chatd import messages as cm
from tether.chatd.binding import AgentRow, ChatBinding, ChatConnections
from tether.chatd.instructions import InstructionFiles
from tether.chatd.mcptools import (
    CONNECTION_FAILED,
    Discovery,
    McpDiscovery,
    McpEntry,
    McpToolCache,
    mcp_tool,
)
from tether.chatd.mcpturn import STREAM_EVENT
from tether.chatd.stream import ChatStreamHub
from tether.chatd.taskowner import TaskOwner
from tether.chatd.tools.base import ChatdDeps, ChatState, ToolContext
from tether.chatd.turn import TurnControl, TurnRunner
from tether.db.pubsub import InProcessBus
from tether.domain.chat import Chat, ChatStatus, StoredMessage
from tether.errors import AgentRequestFailed
from tether.llm.scripted import Call
from tether.settings import Settings
from tether.testing.clock import DEFAULT_START, FakeClock, settle
from tether.testing.fake_agent import FakeAgent, FakeMcpServer, FakeMcpTool
from tether.testing.fake_agent_dialer import HANG, FakeAgentDialer
from tether.testing.fake_binding_store import FakeBindingStore, agent_row
from tether.testing.models import ScriptedModel

MCP_TIMEOUT = 35.0
LOOKUP_TIMEOUT = 5.0

ECHO = McpTool(
    name="echo__echo",
    server="echo",
    tool="echo",
    description="Echo the text back.",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
)


# --- doubles --------------------------------------------------------------------------------


def _workspace(agent: FakeAgent) -> None:
    """Every fake agent's workspace: a project AGENTS.md and an ``echo`` MCP server (the
    contract in tests/contract/test_agent_contract.py holds FakeAgent to the real agent)."""
    (agent.directory / "AGENTS.md").write_text("# Project rules\n")
    echo = FakeMcpTool(ECHO.tool, ECHO.description, ECHO.input_schema, lambda args: "echoed")
    agent.set_mcp_servers(FakeMcpServer("echo", tools=[echo]))


class FakeChats:
    """The part of ``ChatStore`` a turn uses, in memory."""

    def __init__(self) -> None:
        self.rows: list[StoredMessage] = []
        self.finished: list[tuple[str | None, str | None]] = []
        self.fields: dict[uuid.UUID, dict[str, Any]] = {}  # set_fields calls, merged

    async def messages(self, chat_id: uuid.UUID, **_: Any) -> list[StoredMessage]:
        return [m for m in self.rows if m.chat_id == chat_id]

    async def append_message(
        self,
        chat_id: uuid.UUID,
        *,
        role: str,
        parts: list[dict[str, Any]],
        visibility: str = "both",
        model: str | None = None,
    ) -> StoredMessage:
        msg = StoredMessage(
            uuid.uuid4(), chat_id, len(self.rows) + 1, role, parts, visibility, model, DEFAULT_START
        )
        self.rows.append(msg)
        return msg

    async def finish_turn(
        self, chat_id: uuid.UUID, worker_id: uuid.UUID, *, error: str | None = None, **kw: Any
    ) -> tuple[Chat, None]:
        self.finished.append((error, kw.get("error_code")))
        status = ChatStatus.ERROR if error else ChatStatus.WAITING
        return replace(_chat(chat_id, None), status=status, last_error=error), None

    async def queued(self, chat_id: uuid.UUID) -> list[Any]:
        return []

    async def set_fields(self, chat_id: uuid.UUID, **values: Any) -> None:
        self.fields.setdefault(chat_id, {}).update(values)

    def context_rows(self, chat_id: uuid.UUID) -> list[StoredMessage]:
        return [
            m
            for m in self.rows
            if m.chat_id == chat_id and any(p["type"] == "context-file" for p in m.parts)
        ]


def _chat(
    chat_id: uuid.UUID,
    workspace: uuid.UUID | None,
    agent: AgentRow | None = None,
    parent: uuid.UUID | None = None,
) -> Chat:
    return make_chat(
        chat_id,
        parent_chat_id=parent,
        root_chat_id=parent,
        workspace_id=workspace,
        build_id=agent.build_id if agent else None,
        agent_id=agent.id if agent else None,
    )


@dataclass
class World:
    tmp: Path
    clock: FakeClock = field(default_factory=FakeClock)
    store: FakeBindingStore = field(default_factory=FakeBindingStore)
    dialer: FakeAgentDialer = field(init=False)
    chats: FakeChats = field(default_factory=FakeChats)
    cache: McpToolCache = field(default_factory=McpToolCache)
    drain: TaskOwner = field(default_factory=TaskOwner)
    ws: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        self.dialer = FakeAgentDialer(self.tmp / "agents", setup=_workspace)
        self.deps = ChatdDeps(
            settings=Settings(data_dir=self.tmp, max_steps_per_turn=10),
            clock=self.clock,
            bus=InProcessBus(),
            chats=cast(Any, self.chats),
            agents=cast(Any, None),
            workspace_store=cast(Any, None),
            template_store=cast(Any, None),
            workspaces=cast(Any, None),
            users=cast(Any, None),
            hub=ChatStreamHub(),
            dialer=self.dialer,
        )
        self.discovery = McpDiscovery(self.cache, clock=self.clock, timeout_s=MCP_TIMEOUT)
        self.instructions = InstructionFiles(clock=self.clock, timeout_s=LOOKUP_TIMEOUT)

    def running(self) -> AgentRow:
        """A new build of the workspace with a connected agent; returns the agent."""
        row = agent_row(self.ws, uuid.uuid4())
        self.store.add_latest(self.ws, row)
        return row

    def chat(self, agent: AgentRow | None, parent: uuid.UUID | None = None) -> ToolContext:
        chat = _chat(uuid.uuid4(), self.ws, agent, parent)
        binding = ChatBinding(
            chat.id, chat.workspace_id, chat.build_id, chat.agent_id, parent_chat_id=parent
        )
        self.store.add_chat(binding)
        conns: ChatConnections[Any] = ChatConnections(
            binding,
            store=self.store,
            dialer=self.dialer,
            clock=self.clock,
            drain=self.drain,
            validation_delay=0.25,
            dial_timeout=10.0,
        )
        return ToolContext(self.deps, chat, ChatState(conns))

    def runner(self) -> TurnRunner:
        return TurnRunner(
            self.deps,
            model_for=lambda chat: self.model,
            instructions=self.instructions,
            mcp=self.discovery,
        )

    async def turn(self, ctx: ToolContext, scripted: ScriptedModel, text: str = "hi") -> None:
        await self.chats.append_message(
            ctx.chat_id, role="user", parts=[{"type": "text", "text": text}]
        )
        self.model = scripted.build()
        async with asyncio.timeout(5):
            await self.runner().run(ctx.chat, ctx.state, uuid.uuid4(), TurnControl())

    def results(self, chat_id: uuid.UUID, tool: str) -> list[dict[str, Any]]:
        return [
            p
            for m in self.chats.rows
            if m.chat_id == chat_id
            for p in m.parts
            if p["type"] == "tool-result" and p["tool_name"] == tool
        ]


@pytest.fixture
async def world(tmp_path: Path) -> Any:
    w = World(tmp_path)
    yield w
    await w.drain.aclose()


# --- whole turns ------------------------------------------------------------------------------


async def test_pl1_stopped_workspace_turn_reaches_llm_fast(world: World) -> None:
    stale = world.running()
    world.store.stop(world.ws)  # latest build is a stop; the stale agent row stays
    world.dialer.kill(stale.id)
    ctx = world.chat(stale)
    dials_at_first_request: list[int] = []

    def first(messages: Any) -> Any:
        dials_at_first_request.append(len(world.dialer.calls))
        return Call("execute", {"command": "true"})

    scripted = ScriptedModel().then(first).say("ok")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await world.turn(ctx, scripted)
    assert loop.time() - started < 1.0
    assert world.chats.finished == [(None, None)]
    first_request = scripted.requests[0]
    assert not [n for n in first_request.tool_names if "__" in n]  # no MCP tools
    assert "<workspace-context>" not in (first_request.instructions or "")
    assert dials_at_first_request == [0]  # the gate failed fast: nothing was dialled
    assert world.chats.context_rows(ctx.chat_id) == []  # no marker persisted
    [result] = world.results(ctx.chat_id, "execute")
    assert result["is_error"] and result["error_code"] == "workspace_stopped"
    assert ctx.chat_id not in world.cache


async def test_pl2_pl16_warm_turn_costs_no_query_no_dial(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    first = ScriptedModel().call("echo__echo", text="hi").say("ok")
    await world.turn(ctx, first)
    assert "echo__echo" in first.requests[0].tool_names
    assert "# Project rules" in (first.requests[0].instructions or "")
    [echo] = world.results(ctx.chat_id, "echo__echo")
    assert echo["result"] == "echoed" and not echo["is_error"]
    side = world.dialer.side(agent.id)
    assert side.mcp_calls == [("echo__echo", {"text": "hi"})]
    assert (side.list_calls, side.instruction_calls) == (1, 1)
    dials = len(world.dialer.calls)

    world.store.reset_queries()
    second = ScriptedModel().say("again")
    await world.turn(ctx, second)
    assert world.store.queries == []  # PL-2: zero store queries
    assert len(world.dialer.calls) == dials  # no dial
    assert (side.list_calls, side.instruction_calls) == (1, 1)  # PL-16: no workspace contact
    assert "echo__echo" in second.requests[0].tool_names
    assert "# Project rules" in (second.requests[0].instructions or "")
    assert len(world.chats.context_rows(ctx.chat_id)) == 1


async def test_cold_turn_gates_once_for_both_parallel_steps(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    world.store.before("latest_build_agents", lambda: settle(10))  # a query takes a while
    await world.turn(ctx, ScriptedModel().say("cold"))
    # one latest-build check shared by MCP discovery and instruction files, then the
    # binding-first read of the dial; one dial
    assert world.store.query_names == ["latest_build_agents", "get_agent"]
    assert world.dialer.dialed == [agent.id]
    side = world.dialer.side(agent.id)
    assert (side.list_calls, side.instruction_calls) == (1, 1)


async def test_pl3_pl15_rebuilt_workspace_rediscovers_and_rereads(world: World) -> None:
    old = world.running()
    ctx = world.chat(old)
    await world.turn(ctx, ScriptedModel().say("one"))
    assert world.cache.get(ctx.chat_id, old.id) is not None
    new = world.running()  # rebuild: a new agent; the old one is gone
    world.dialer.kill(old.id)
    other = McpTool(
        name="files__stat", server="files", tool="stat", description="", input_schema={}
    )
    world.dialer.side(new.id).tools = McpToolList(tools=[other], servers=[])
    world.dialer.side(new.id).instructions = Instructions(
        os="linux",
        directory="/w",
        files=[InstructionFile(path="/w/AGENTS.md", content="v2", truncated=False)],
    )
    ctx.conns.evict()  # the build event
    scripted = ScriptedModel().say("two")
    await world.turn(ctx, scripted)
    assert world.cache.get(ctx.chat_id, new.id) == (other,)  # PL-3: entry replaced
    assert world.cache.get(ctx.chat_id, old.id) is None
    names = scripted.requests[0].tool_names
    assert "files__stat" in names and "echo__echo" not in names
    instructions = scripted.requests[0].instructions or ""
    assert "v2" in instructions and "# Project rules" not in instructions  # PL-15
    rows = world.chats.context_rows(ctx.chat_id)
    assert [r.parts[0]["agent_id"] for r in rows] == [str(old.id), str(new.id)]


async def test_pl11_pl14_unreachable_then_started_retries(world: World) -> None:
    agent = world.running()
    world.store.stop(world.ws)
    ctx = world.chat(agent)
    await world.turn(ctx, ScriptedModel().say("stopped"))
    assert world.chats.context_rows(ctx.chat_id) == []  # PL-11: no marker
    started = world.running()  # the user starts the workspace
    ctx.state.conns.select_workspace(ChatBinding(ctx.chat_id, world.ws))
    scripted = ScriptedModel().say("running")
    await world.turn(ctx, scripted)
    assert "# Project rules" in (scripted.requests[0].instructions or "")  # PL-14
    [row] = world.chats.context_rows(ctx.chat_id)
    assert row.role == "user" and row.visibility == "user"
    assert row.parts[0]["agent_id"] == str(started.id)


# --- instruction files ------------------------------------------------------------------------


async def test_pl10_block_and_persisted_parts(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    block = await world.instructions.block(ctx, [])
    project = world.dialer.agent(agent.id).directory
    assert block == (
        "<workspace-context>\n"
        "Operating System: linux\n"
        f"Working Directory: {project}\n"
        f"\nSource: {project}/AGENTS.md\n# Project rules\n"
        "</workspace-context>"
    )
    [row] = world.chats.rows
    [part] = cm.load_parts(row.parts)
    assert isinstance(part, cm.ContextFilePart)
    assert (part.agent_id, part.os, part.directory) == (agent.id, "linux", str(project))
    # to_model_messages never sends it to the model as a message
    history = [cm.ChatMessage(role="user", parts=[part], visibility="user")]
    assert cm.to_model_messages(history) == []


async def test_pl13_nothing_found_persists_blank_marker(world: World) -> None:
    agent = world.running()
    world.dialer.side(agent.id).instructions = Instructions(os="linux", directory="/p", files=[])
    ctx = world.chat(agent)
    block = await world.instructions.block(ctx, [])
    assert "Source:" not in block
    [row] = world.chats.rows
    [marker] = cm.load_parts(row.parts)
    assert isinstance(marker, cm.ContextFilePart)
    assert marker.agent_id == agent.id and marker.path is None and marker.content == ""
    assert world.chats.fields[ctx.chat_id] == {"last_injected_context": None}
    # the marker suppresses further lookups for this agent
    history = [cm.ChatMessage(role="user", parts=[marker], visibility="user")]
    assert cm.has_persisted_instructions(history)
    await world.instructions.block(ctx, history)
    assert world.dialer.side(agent.id).instruction_calls == 1


async def test_pl11_dial_failure_persists_nothing(world: World) -> None:
    agent = world.running()
    world.dialer.kill(agent.id)  # the agent row is current but does not answer
    ctx = world.chat(agent)
    assert await world.instructions.block(ctx, []) == ""
    assert world.chats.rows == []


async def test_pl19_slow_lookup_is_abandoned_without_marker(world: World) -> None:
    agent = world.running()
    world.dialer.side(agent.id).instructions = HANG
    ctx = world.chat(agent)
    task = asyncio.create_task(world.instructions.block(ctx, []))
    await _wait_for(lambda: world.dialer.side(agent.id).instruction_calls == 1)
    await world.clock.wait_for_sleepers(1)
    world.clock.advance(LOOKUP_TIMEOUT)
    assert await asyncio.wait_for(task, 2) == ""
    assert world.chats.rows == []


# --- MCP discovery ----------------------------------------------------------------------------


async def test_pl4_hanging_list_is_bounded(world: World) -> None:
    agent = world.running()
    world.dialer.side(agent.id).tools = HANG
    ctx = world.chat(agent)
    task = asyncio.create_task(world.discovery.discover(ctx))
    await _wait_for(lambda: world.dialer.side(agent.id).list_calls == 1)
    world.clock.advance(MCP_TIMEOUT - 0.1)
    await settle()
    assert not task.done()
    world.clock.advance(0.1)
    assert await asyncio.wait_for(task, 2) == []
    assert ctx.chat_id not in world.cache


async def test_pl5_empty_list_is_not_cached(world: World) -> None:
    agent = world.running()
    world.dialer.side(agent.id).tools = McpToolList(tools=[], servers=[])
    ctx = world.chat(agent)
    assert await world.discovery.discover(ctx) == []
    assert ctx.chat_id not in world.cache
    world.dialer.side(agent.id).tools = McpToolList(tools=[ECHO], servers=[])
    assert await world.discovery.discover(ctx) == [ECHO]  # the next turn asks again
    assert world.dialer.side(agent.id).list_calls == 2
    assert world.cache.get(ctx.chat_id, agent.id) == (ECHO,)


async def test_pl6_gate_without_agent_deletes_entry_and_never_dials(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    assert await world.discovery.discover(ctx) == [ECHO]
    dials = len(world.dialer.calls)
    world.store.stop(world.ws)
    ctx.conns.evict()  # the stop build's event
    assert await world.discovery.discover(ctx) == []
    assert ctx.chat_id not in world.cache
    assert len(world.dialer.calls) == dials


async def test_discovery_failure_gives_no_tools(world: World) -> None:
    agent = world.running()
    world.dialer.side(agent.id).tools = AgentRequestFailed("boom", status=500, agent_code="error")
    ctx = world.chat(agent)
    assert await world.discovery.discover(ctx) == []
    assert ctx.chat_id not in world.cache


async def test_subagent_seeds_from_parent_entry(world: World) -> None:
    agent = world.running()
    parent = world.chat(agent)
    assert await world.discovery.discover(parent) == [ECHO]
    child = world.chat(agent, parent=parent.chat_id)
    assert await world.discovery.discover(child) == [ECHO]
    assert world.dialer.side(agent.id).list_calls == 1  # the child did not list again
    assert world.cache.get(child.chat_id, agent.id) == (ECHO,)


# --- MCP tool calls ---------------------------------------------------------------------------


async def test_pl7_tool_404_invalidates_entry(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    await world.discovery.discover(ctx)
    world.dialer.side(agent.id).call = AgentRequestFailed(
        "no such tool", status=404, agent_code="not_found"
    )
    tool = mcp_tool(ctx, ECHO, world.cache)
    with pytest.raises(ToolFailed) as info:
        await tool.function(text="x")
    message, code, _ = cm.parse_tool_error(info.value.message)
    assert code == "not_found" and "no such tool" in message
    assert ctx.chat_id not in world.cache


async def test_pl8_dead_workspace_is_connection_failed_with_code(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    await world.discovery.discover(ctx)  # conn cached
    world.dialer.kill(agent.id)
    world.store.stop(world.ws)
    tool = mcp_tool(ctx, ECHO, world.cache)
    with pytest.raises(ToolFailed) as info:
        await tool.function(text="x")
    message, code, remediation = cm.parse_tool_error(info.value.message)
    assert message.startswith(CONNECTION_FAILED)
    assert code == "workspace_stopped" and remediation == "start_workspace"


async def test_mcp_tool_error_result_and_invalid_json(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    world.dialer.side(agent.id).call = McpCallResult(
        content=[McpContent(type="text", text="bad input")], is_error=True
    )
    assert await world.discovery.discover(ctx) == [ECHO]
    assert world.cache.entry(ctx.chat_id, agent.id) == McpEntry(agent.id, (ECHO,), True)
    tool = mcp_tool(ctx, ECHO, world.cache)
    assert tool.tool_def.parameters_json_schema["properties"] == {"text": {"type": "string"}}
    with pytest.raises(ToolFailed) as info:
        await tool.function(text="x")
    assert cm.parse_tool_error(info.value.message)[:2] == ("bad input", "mcp_tool_error")
    assert world.cache.entry(ctx.chat_id, agent.id) == McpEntry(agent.id, (ECHO,), False)
    with pytest.raises(ToolFailed) as info:
        await tool.function(**{cm.INVALID_JSON_KEY: "{oops"})
    assert cm.parse_tool_error(info.value.message)[1] == "invalid_arguments"


async def _wait_for(cond: Any, timeout: float = 2.0) -> None:
    """Poll ``cond`` (fake-agent counters have no event to wait on) with a deadline."""
    async with asyncio.timeout(timeout):
        while True:
            if cond():
                return
            await asyncio.sleep(0)


# --- MCP never blocks the model (issue #9 §3) -------------------------------------------------

SLOW = McpTool(
    name="slow__run",
    server="slow",
    tool="run",
    description="Run slowly.",
    input_schema={"type": "object", "properties": {}},
)
OK_ECHO = McpServerStatus(name="echo", status="ok")


def _listing(*tools: McpTool, **servers: str) -> McpToolList:
    return McpToolList(
        tools=list(tools),
        servers=[OK_ECHO]
        + [
            McpServerStatus(name=name, status=state, error="timed out connecting after 30s")
            if state == "error"
            else McpServerStatus(name=name, status=state)
            for name, state in servers.items()
        ],
    )


def _notices(world: World, chat_id: uuid.UUID) -> list[StoredMessage]:
    return [m for m in world.chats.rows if m.chat_id == chat_id and m.role == "system"]


async def test_first_call_asks_the_agent_to_wait_only_the_short_bound(world: World) -> None:
    agent = world.running()
    ctx = world.chat(agent)
    assert await world.discovery.discover(ctx) == [ECHO]
    assert world.dialer.side(agent.id).waits == [2.0]  # mcp_first_call_wait_s


async def test_pending_server_tools_join_the_next_step(world: World) -> None:
    agent = world.running()
    side = world.dialer.side(agent.id)
    side.tools = _listing(ECHO, slow="pending")
    ctx = world.chat(agent)
    arrived = False

    async def arrive() -> McpCallResult:
        """During the first tool call, the slow server connects; the watcher lists again."""
        nonlocal arrived
        if not arrived:
            arrived = True
            side.tools = _listing(ECHO, SLOW, slow="ok")
            await _wait_for(lambda: world.clock.sleepers == 1)  # the watcher, between lists
            world.clock.advance(0.5)
            await _wait_for(lambda: side.list_calls == 2)
            await settle()
        return McpCallResult(content=[McpContent(type="text", text="echoed")], is_error=False)

    side.call = arrive
    scripted = (
        ScriptedModel(per_turn=False).call("echo__echo", text="hi").call("slow__run").say("ok")
    )
    await world.turn(ctx, scripted)
    assert "echo__echo" in scripted.requests[0].tool_names
    assert "slow__run" not in scripted.requests[0].tool_names
    assert "slow__run" in scripted.requests[1].tool_names  # joined at the next step
    [slow] = world.results(ctx.chat_id, "slow__run")
    assert not slow["is_error"]
    assert world.cache.entry(ctx.chat_id, agent.id) == McpEntry(agent.id, (ECHO, SLOW), True)
    assert world.clock.sleepers == 0  # the watcher ended with the turn


async def test_failed_server_is_reported_once_and_not_waited_for_again(world: World) -> None:
    agent = world.running()
    side = world.dialer.side(agent.id)
    side.tools = _listing(ECHO, hangs="error")
    ctx = world.chat(agent)
    events: list[dict[str, Any]] = []
    publish = world.deps.hub.publish

    def record(chat_id: uuid.UUID, event: str, data: dict[str, Any]) -> Any:
        if event == STREAM_EVENT:
            events.append(data)
        return publish(chat_id, event, data)

    world.deps.hub.publish = record  # type: ignore[method-assign]
    first = ScriptedModel().say("one")
    await world.turn(ctx, first)
    assert "echo__echo" in first.requests[0].tool_names
    notice = first.requests[0].instructions or ""
    assert "<workspace-mcp>" in notice and "- hangs: timed out connecting after 30s" in notice
    [note] = _notices(world, ctx.chat_id)
    assert note.visibility == "user"  # the transcript's status detail, never sent to the model
    assert "hangs (timed out connecting after 30s)" in note.parts[0]["text"]
    assert [e["failed"][0]["name"] for e in events] == ["hangs"]

    # The next turns: one listing over the cached connection (the agent answers from its
    # negative cache), no gate query, no dial, and no second report.
    world.store.reset_queries()
    dials = len(world.dialer.calls)
    for text in ("two", "three"):
        again = ScriptedModel().say(text)
        await world.turn(ctx, again, text)
        assert "<workspace-mcp>" not in (again.requests[0].instructions or "")
        assert "echo__echo" in again.requests[0].tool_names
    assert world.store.queries == [] and len(world.dialer.calls) == dials
    assert side.list_calls == 3 and len(_notices(world, ctx.chat_id)) == 1 and len(events) == 1

    # Fixed, then broken again: a new failure is reported again.
    side.tools = _listing(ECHO, hangs="ok")
    await world.turn(ctx, ScriptedModel().say("fixed"), "fixed")
    assert world.cache.entry(ctx.chat_id, agent.id) == McpEntry(agent.id, (ECHO,), True)
    world.cache.invalidate(ctx.chat_id)  # e.g. a rebuild
    side.tools = _listing(ECHO, hangs="error")
    broken = ScriptedModel().say("broken")
    await world.turn(ctx, broken, "broken")
    assert "<workspace-mcp>" in (broken.requests[0].instructions or "")
    assert len(_notices(world, ctx.chat_id)) == 2


async def test_unsettled_empty_listing_is_cached_and_refreshed_without_the_gate(
    world: World,
) -> None:
    agent = world.running()
    side = world.dialer.side(agent.id)
    side.tools = McpToolList(tools=[], servers=[McpServerStatus(name="only", status="pending")])
    ctx = world.chat(agent)
    assert await world.discovery.discover(ctx) == []
    assert world.cache.entry(ctx.chat_id, agent.id) == McpEntry(agent.id, (), False)
    world.store.reset_queries()
    side.tools = McpToolList(tools=[ECHO], servers=[OK_ECHO])
    assert await world.discovery.discover(ctx) == [ECHO]  # the config changed: seen at once
    assert world.store.queries == []
    assert world.cache.entry(ctx.chat_id, agent.id) == McpEntry(agent.id, (ECHO,), True)


def test_a_failure_is_news_again_only_after_the_server_worked() -> None:
    cache, chat = McpToolCache(), uuid.uuid4()
    bad = McpServerStatus(name="hangs", status="error", error="timed out connecting after 30s")
    assert cache.unreported(chat, Discovery(failed=(bad,))) == [bad]
    assert cache.unreported(chat, Discovery(failed=(bad,))) == []
    assert cache.unreported(chat, Discovery(answered=False)) == []  # discovery failed
    assert cache.unreported(chat, Discovery(pending=("hangs",))) == []  # a background retry
    assert cache.unreported(chat, Discovery(failed=(bad,))) == []  # ... that failed again
    assert cache.unreported(chat, Discovery()) == []  # works now (or left .mcp.json)
    assert cache.unreported(chat, Discovery(failed=(bad,))) == [bad]  # broken again: news


async def test_pl9_plan_mode_turn_never_asks_for_mcp_tools(world: World) -> None:
    """PL-9: a plan-mode turn skips workspace MCP discovery (the agent is never asked for
    its list, even with a running workspace), still reads the instructions, and offers no
    tool that writes."""
    agent = world.running()
    ctx = world.chat(agent)
    ctx = ToolContext(world.deps, replace(ctx.chat, plan_mode=True), ctx.state)
    scripted = ScriptedModel().say("a plan")
    await world.turn(ctx, scripted)
    assert world.chats.finished == [(None, None)]
    side = world.dialer.side(agent.id)
    assert side.list_calls == 0 and side.instruction_calls == 1
    [request] = scripted.requests
    assert not [n for n in request.tool_names if "__" in n]
    assert not {"execute", "edit_files", "process_signal", "create_workspace"} & set(
        request.tool_names
    )
    assert "# Project rules" in (request.instructions or "")
    assert f"~/.tether/plans/{ctx.chat_id}.md" in (request.instructions or "")
