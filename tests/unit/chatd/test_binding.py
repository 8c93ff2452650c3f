"""docs/behaviour.md §9.2 (AR-1 … AR-13) and §9.3 (GC-1 … GC-21): agent resolution and the
per-chat connection cache, against the in-memory store, the fake dialer and a FakeClock.

tether deviations (docs/behaviour.md §8) are stated in each test's docstring. The two that recur:
* binding writes need no "latest build" read (the agent row carries its build id), so the
  lazy-bind and switch sequences are one query shorter than upstream's;
* a connection-cache hit makes no store call at all (no per-hit liveness read).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from tether.chatd.binding import (
    ANCESTOR_CHAT_IDS_HEADER,
    CHAT_ID_HEADER,
    AgentResolver,
    AgentRow,
    ChatBinding,
    ChatConnections,
    Conn,
    select_chat_agent,
)
from tether.chatd.taskowner import TaskOwner
from tether.domain.agent import AgentStatus
from tether.errors import (
    AgentSelectionError,
    AgentTransportError,
    AgentUnreachable,
    ConnectorNotConfigured,
    DialTimeout,
    NoWorkspace,
    TetherError,
    WorkspaceChanged,
    WorkspaceStopped,
)
from tether.testing.clock import FakeClock, settle
from tether.testing.fake_binding_store import FakeBindingStore, agent_row
from tether.testing.fake_dialer import DialPlan, FakeConn, FakeDialer
from tether.workspaces.status import compute_agent_status

LATEST_AGENTS = "latest_build_agents"
UPDATE = "update_build_agent_binding"


@dataclass
class World:
    """One workspace with a running latest build (agent ``main``) and a chat bound to it."""

    clock: FakeClock = field(default_factory=FakeClock)
    drain: TaskOwner = field(default_factory=lambda: TaskOwner("test"))
    dialer: FakeDialer = field(default_factory=FakeDialer)
    store: FakeBindingStore = field(default_factory=FakeBindingStore)
    ws: uuid.UUID = field(default_factory=uuid.uuid4)
    build: uuid.UUID = field(default_factory=uuid.uuid4)
    chat_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        self.main = agent_row(self.ws, self.build, name="main", now=self.clock.now())
        self.store.add_latest(self.ws, self.main)

    def rebuild(self, name: str = "main") -> AgentRow:
        """A new start build with a new agent row; the old rows stay readable."""
        self.build = uuid.uuid4()
        new = agent_row(self.ws, self.build, name=name, now=self.clock.now())
        self.store.add_latest(self.ws, new)
        return new

    def bind(
        self, agent: AgentRow | None = None, *, parent_chat_id: uuid.UUID | None = None
    ) -> ChatBinding:
        binding = ChatBinding(
            self.chat_id,
            self.ws,
            build_id=agent.build_id if agent else None,
            agent_id=agent.id if agent else None,
            parent_chat_id=parent_chat_id,
            root_chat_id=parent_chat_id,
        )
        return self.store.add_chat(binding)

    def conns(
        self,
        binding: ChatBinding,
        *,
        delay: float = 5.0,
        dial_timeout: float = 30.0,
        connector: bool = True,
    ) -> ChatConnections[FakeConn]:
        return ChatConnections(
            binding,
            store=self.store,
            dialer=self.dialer if connector else None,
            clock=self.clock,
            drain=self.drain,
            validation_delay=delay,
            dial_timeout=dial_timeout,
        )


@pytest.fixture
async def w() -> AsyncIterator[World]:
    world = World()
    yield world
    await world.drain.aclose()


def fake(conn: Conn) -> FakeConn:
    assert isinstance(conn, FakeConn)
    return conn


# --- §9.2 agent resolution --------------------------------------------------------------


async def test_ar1_binding_first_path_one_query(w: World) -> None:
    """AR-1: bound agent row exists → exactly one query (agent by id); cached after."""
    binding = w.bind(w.main)
    resolver = AgentResolver(binding, w.store)
    assert await resolver.ensure_workspace_agent() == w.main
    assert w.store.queries == [("get_agent", (w.main.id,))]
    assert resolver.snapshot is binding
    assert await resolver.ensure_workspace_agent() == w.main
    assert len(w.store.queries) == 1


async def test_ar2_null_binding_lazy_bind(w: World) -> None:
    """AR-2: workspace only → latest agents, then one guarded write of build+agent; the
    snapshot is the written row. (Upstream also read the latest build; tether takes the
    build id from the agent row, so the pair is always consistent.)"""
    resolver = AgentResolver(w.bind(), w.store)
    assert await resolver.ensure_workspace_agent() == w.main
    assert w.store.queries == [
        (LATEST_AGENTS, (w.ws,)),
        (UPDATE, (w.chat_id, w.ws, w.build, w.main.id)),
    ]
    assert resolver.snapshot == w.store.chats[w.chat_id]
    assert (resolver.snapshot.build_id, resolver.snapshot.agent_id) == (w.build, w.main.id)


async def test_ar3_stale_binding_repair_when_row_missing(w: World) -> None:
    """AR-3: the bound agent row is gone → same repair sequence, bound to the current one."""
    old = w.main
    current = w.rebuild()
    w.store.remove_agent(old.id)
    resolver = AgentResolver(w.bind(old), w.store)
    assert await resolver.ensure_workspace_agent() == current
    assert w.store.query_names == ["get_agent", LATEST_AGENTS, UPDATE]
    assert resolver.snapshot.agent_id == current.id
    assert w.store.chats[w.chat_id].build_id == current.build_id


async def test_ar4_cached_agent_of_other_workspace_is_ignored(w: World) -> None:
    """AR-4: an agent cached for workspace 1 is never returned for workspace 2. (In tether
    the snapshot only moves through ``reset``/``select_workspace``, which also drop the
    agent; the resolver additionally checks the workspace before trusting its cache.)"""
    resolver = AgentResolver(w.bind(w.main), w.store)
    await resolver.ensure_workspace_agent()
    ws2 = uuid.uuid4()
    other = agent_row(ws2, uuid.uuid4(), name="other")
    w.store.add_latest(ws2, other)
    binding2 = w.store.add_chat(ChatBinding(w.chat_id, ws2))
    resolver.reset(binding2)
    w.store.reset_queries()
    assert await resolver.ensure_workspace_agent() == other
    assert w.store.query_names == [LATEST_AGENTS, UPDATE]
    assert w.store.queries[0] == (LATEST_AGENTS, (ws2,))


async def test_ar5_no_workspace(w: World) -> None:
    """AR-5: neither the snapshot nor the re-read row has a workspace → NoWorkspace,
    whose remediation is create_workspace."""
    w.store.add_chat(ChatBinding(w.chat_id, None))
    resolver = AgentResolver(ChatBinding(w.chat_id, None), w.store)
    with pytest.raises(NoWorkspace) as info:
        await resolver.ensure_workspace_agent()
    assert info.value.remediation == "create_workspace"
    assert w.store.query_names == ["get_chat_binding"]


async def test_ar6_workspace_appears_after_reload(w: World) -> None:
    """AR-6: snapshot lacks the workspace, the store has it → one reload, then lazy bind."""
    w.bind()
    resolver = AgentResolver(ChatBinding(w.chat_id, None), w.store)
    assert await resolver.ensure_workspace_agent() == w.main
    assert w.store.query_names == ["get_chat_binding", LATEST_AGENTS, UPDATE]
    assert resolver.snapshot.workspace_id == w.ws


async def test_ar7_refresh_does_not_reload_when_workspace_present(w: World) -> None:
    """AR-7: a snapshot with a workspace is returned without a store call."""
    binding = w.bind()
    resolver = AgentResolver(binding, w.store)
    assert await resolver.refresh_snapshot() is binding
    assert w.store.queries == []


async def test_ar8_refresh_reload_error(w: World) -> None:
    """AR-8: the reload fails → error names "reload chat workspace state" and the cause;
    the snapshot is unchanged."""
    original = ChatBinding(w.chat_id, None)
    resolver = AgentResolver(original, w.store)
    w.store.fail("get_chat_binding", RuntimeError("connection reset"))
    with pytest.raises(TetherError, match="reload chat workspace state: connection reset"):
        await resolver.refresh_snapshot()
    assert resolver.snapshot is original


async def test_ar9_latest_build_has_no_agents(w: World) -> None:
    """AR-9: stopped workspace, no agent binding → WorkspaceStopped; nothing persisted."""
    w.store.stop(w.ws)
    binding = w.bind()
    resolver = AgentResolver(binding, w.store)
    with pytest.raises(WorkspaceStopped) as info:
        await resolver.ensure_workspace_agent()
    assert info.value.code == "workspace_stopped"
    assert UPDATE not in w.store.query_names
    assert w.store.chats[w.chat_id] == binding


async def test_ar10_multiple_chat_agents_is_selection_error(w: World) -> None:
    """AR-10: tether marks the chat agent with ``chat: true`` (not a name suffix); two
    marked root agents → AgentSelectionError; nothing persisted."""
    w.store.add_latest(
        w.ws,
        agent_row(w.ws, w.build, name="a", chat=True),
        agent_row(w.ws, w.build, name="b", chat=True),
    )
    resolver = AgentResolver(w.bind(), w.store)
    with pytest.raises(AgentSelectionError, match="multiple agents are marked chat: true"):
        await resolver.ensure_workspace_agent()
    assert UPDATE not in w.store.query_names


def test_ar10_selection_rules() -> None:
    """AR-10 (rules): sub-agents never count; one ``chat`` agent wins over sort order;
    otherwise display_order, lower-cased name, name, id; no root agent → stopped."""
    ws, build = uuid.uuid4(), uuid.uuid4()
    first = agent_row(ws, build, name="Zed", display_order=0)
    b_upper = agent_row(ws, build, name="B", display_order=1)
    a_lower = agent_row(ws, build, name="a", display_order=1)
    chat = agent_row(ws, build, name="zz-chat", display_order=9, chat=True)
    sub = agent_row(ws, build, name="devcontainer", chat=True, parent_id=first.id)
    assert select_chat_agent([b_upper, a_lower, first]) == first
    assert select_chat_agent([b_upper, a_lower]) == a_lower
    assert select_chat_agent([first, chat, sub]) == chat
    with pytest.raises(WorkspaceStopped):
        select_chat_agent([sub])


async def test_ar11_rebound_during_resolution_retries_once(w: World) -> None:
    """AR-11: a tool re-binds the chat between the read and the write. The write is guarded
    by workspace id, so it is refused (Conflict); the resolver re-reads the chat and binds
    the new workspace's agent."""
    ws2 = uuid.uuid4()
    other = agent_row(ws2, uuid.uuid4(), name="other")
    w.store.add_latest(ws2, other)
    resolver = AgentResolver(w.bind(), w.store)

    async def rebind() -> None:
        w.store.add_chat(ChatBinding(w.chat_id, ws2))

    w.store.before(UPDATE, rebind)
    assert await resolver.ensure_workspace_agent() == other
    assert w.store.query_names == [LATEST_AGENTS, UPDATE, "get_chat_binding", LATEST_AGENTS, UPDATE]
    assert resolver.snapshot.workspace_id == ws2
    assert w.store.chats[w.chat_id].agent_id == other.id


async def test_ar11_rebound_twice_is_workspace_changed(w: World) -> None:
    """AR-11: re-bound during both attempts → WorkspaceChanged."""
    resolver = AgentResolver(w.bind(), w.store)

    def rebind_to_new_workspace() -> None:
        ws = uuid.uuid4()
        w.store.add_latest(ws, agent_row(ws, uuid.uuid4()))

        async def hook() -> None:
            w.store.add_chat(ChatBinding(w.chat_id, ws))

        w.store.before(UPDATE, hook)

    rebind_to_new_workspace()
    rebind_to_new_workspace()
    with pytest.raises(WorkspaceChanged, match="chat workspace changed while resolving agent"):
        await resolver.ensure_workspace_agent()


async def test_ar11_select_workspace_during_write_retries(w: World) -> None:
    """AR-11 (in-process): ``select_workspace`` lands while the write is in flight; the
    tool's snapshot wins and resolution restarts for the new workspace."""
    ws2 = uuid.uuid4()
    other = agent_row(ws2, uuid.uuid4(), name="other")
    w.store.add_latest(ws2, other)
    conns = w.conns(w.bind())

    async def select() -> None:
        conns.select_workspace(w.store.add_chat(ChatBinding(w.chat_id, ws2)))

    w.store.before(UPDATE, select)
    assert await conns.resolver.ensure_workspace_agent() == other
    assert conns.binding.workspace_id == ws2


async def test_ar12_bound_agent_lookup_error_falls_back(
    w: World, caplog: pytest.LogCaptureFixture
) -> None:
    """AR-12: reading the bound agent fails (not "not found") → warning, then the latest
    build decides and the binding is written again."""
    resolver = AgentResolver(w.bind(w.main), w.store)
    w.store.fail("get_agent", RuntimeError("too many connections"))
    with caplog.at_level(logging.WARNING, logger="tether.chatd.binding"):
        assert await resolver.ensure_workspace_agent() == w.main
    assert "too many connections" in caplog.text
    assert w.store.query_names == ["get_agent", LATEST_AGENTS, UPDATE]


async def test_ar13_select_workspace_clears_cached_state(w: World) -> None:
    """AR-13: select-workspace replaces the snapshot, closes the cached conn exactly once
    and clears agent, conn and cached workspace."""
    conns = w.conns(w.bind(w.main))
    conn = fake(await conns.get_conn())
    ws2 = uuid.uuid4()
    binding2 = ChatBinding(w.chat_id, ws2)
    conns.select_workspace(binding2)
    assert conns.binding is binding2
    assert conns.cached_conn is None
    assert conns.cached_agent is None
    assert conns.resolver.cached_workspace_id is None
    await w.drain.wait_idle()
    assert conn.close_calls == 1
    conns.select_workspace(binding2)  # nothing cached any more: no second close
    await w.drain.wait_idle()
    assert conn.close_calls == 1


# --- §9.3 connection acquisition --------------------------------------------------------


async def test_gc1_lazy_validation_switches_agent(w: World) -> None:
    """GC-1: the stale bound agent fails fast; the dial switches to the current agent and
    the binding is written. Queries: agent(stale), latest agents, write (upstream also read
    the latest build and the new agent row; tether already has both from validation)."""
    stale = w.main
    current = w.rebuild()
    w.dialer.script(stale.id, DialPlan.fail())
    conns = w.conns(w.bind(stale))
    conn = fake(await conns.get_conn())
    assert conn.agent_id == current.id
    assert w.dialer.dialed == [stale.id, current.id]
    assert w.store.queries == [
        ("get_agent", (stale.id,)),
        (LATEST_AGENTS, (w.ws,)),
        (UPDATE, (w.chat_id, w.ws, current.build_id, current.id)),
    ]
    assert conns.binding == w.store.chats[w.chat_id]
    assert conns.cached_agent == current
    assert conn.headers[CHAT_ID_HEADER] == str(w.chat_id)


async def test_gc2_fast_fails_without_current_agent(w: World) -> None:
    """GC-2: stale binding, latest build has no agent, dial fails → WorkspaceStopped at
    once; all cached state cleared."""
    w.store.stop(w.ws)
    w.dialer.script(w.main.id, DialPlan.fail())
    conns = w.conns(w.bind(w.main))
    with pytest.raises(WorkspaceStopped):
        await conns.get_conn()
    assert conns.cached_conn is None
    assert conns.cached_agent is None
    assert conns.resolver.cached_workspace_id is None
    assert w.store.query_names == ["get_agent", LATEST_AGENTS]
    assert w.clock.monotonic() == 0


async def test_gc3_stale_agent_recovery_after_rebuild(w: World) -> None:
    """GC-3: the bound agent of the previous build reads as disconnected; the miss path
    makes no liveness pre-check, so the dial switches to the new agent and succeeds."""
    now = w.clock.now()
    old = replace(
        w.main,
        last_connected_at=now - timedelta(minutes=10),
        disconnected_at=now - timedelta(minutes=9),
    )
    w.store.add_agent(old)
    assert compute_agent_status(old, now, 30) is AgentStatus.DISCONNECTED
    new = w.rebuild("main")
    w.dialer.script(old.id, DialPlan.fail("agent is not connected"))
    conns = w.conns(w.bind(old))
    conn = fake(await conns.get_conn())
    assert conn.agent_id == new.id
    assert (conns.binding.build_id, conns.binding.agent_id) == (new.build_id, new.id)
    assert conns.cached_agent == new
    assert conns.cached_conn is conn


async def test_gc4_same_build_agent_crash_is_typed_and_informative(w: World) -> None:
    """GC-4: the bound agent is still the latest build's only agent but every dial fails.
    Upstream surfaced the raw wrapped transport error; tether raises AgentUnreachable
    (remediation stop_workspace then start_workspace) carrying the wrapped text."""
    w.dialer.script(w.main.id, DialPlan.fail("agent is not connected"))
    conns = w.conns(w.bind(w.main))
    with pytest.raises(AgentUnreachable) as info:
        await conns.get_conn()
    assert "dial with lazy validation: agent is not connected" in str(info.value)
    assert w.dialer.dialed == [w.main.id, w.main.id]
    assert conns.cached_agent == w.main
    assert conns.cached_conn is None


async def _warm(w: World) -> tuple[ChatConnections[FakeConn], FakeConn]:
    conns = w.conns(w.bind(w.main))
    conn = fake(await conns.get_conn())
    w.store.reset_queries()
    return conns, conn


async def test_gc5_cache_hit_makes_no_store_call(w: World) -> None:
    """GC-5: cache hit → the cached conn, no dial, not closed, and (tether) zero store
    calls: upstream re-read the agent row on every hit; tether lets the request prove
    liveness."""
    conns, conn = await _warm(w)
    assert await conns.get_conn() is conn
    assert w.store.queries == []
    assert w.dialer.dialed == [w.main.id]
    assert conn.close_calls == 0


async def test_gc6_cache_hit_ignores_store_errors(w: World) -> None:
    """GC-6: the store is failing; a hit does not touch it, so the cached conn returns."""
    conns, conn = await _warm(w)
    for method in ("get_agent", LATEST_AGENTS, "get_chat_binding", UPDATE):
        w.store.fail(method, RuntimeError("db down"), times=None)
    assert await conns.get_conn() is conn
    assert w.store.queries == []
    assert conn.close_calls == 0


async def test_gc7_timed_out_agent_with_working_conn_is_kept(w: World) -> None:
    """GC-7: decision — an agent whose status computes as ``timeout`` but whose connection
    works is kept (the later-upstream behaviour): the request itself proves liveness."""
    conns, conn = await _warm(w)
    timed_out = replace(
        w.main,
        created_at=w.clock.now() - timedelta(minutes=10),
        first_connected_at=None,
        last_connected_at=None,
        connection_timeout_s=60,
    )
    w.store.add_agent(timed_out)
    assert compute_agent_status(timed_out, w.clock.now(), 30) is AgentStatus.TIMEOUT
    assert await conns.get_conn() is conn
    assert await conns.run(lambda c: fake(c).call("ls")) == f"ls from {w.main.id}"
    assert w.store.queries == []
    assert conn.close_calls == 0


async def test_gc8_dead_agent_on_cache_hit_redials_then_typed_error(w: World) -> None:
    """GC-8: the cached conn's agent died. tether: the request fails with a transport
    error → evict (conn closed) → one lazy-validation dial → it fails too → AgentUnreachable
    (same build). Upstream April returned "agent disconnected" from a DB read instead."""
    conns, conn = await _warm(w)
    w.dialer.kill(w.main.id)
    with pytest.raises(AgentUnreachable, match="dial with lazy validation"):
        await conns.run(lambda c: fake(c).call())
    await w.drain.wait_idle()
    assert conn.close_calls == 1
    assert conns.cached_conn is None
    assert w.dialer.dialed == [w.main.id, w.main.id, w.main.id]  # first, redial, retry


async def test_gc8_dead_agent_of_stopped_workspace_is_workspace_stopped(w: World) -> None:
    """GC-8 (stopped): the workspace was stopped (event lost); the request fails, the
    fresh dial validates and finds no agent → WorkspaceStopped."""
    conns, _ = await _warm(w)
    w.dialer.kill(w.main.id)
    w.store.stop(w.ws)
    with pytest.raises(WorkspaceStopped):
        await conns.run(lambda c: fake(c).call())
    assert conns.cached_conn is None


async def test_gc8_dead_agent_after_rebuild_recovers_and_reruns(w: World) -> None:
    """GC-8 (rebuilt): the fresh dial switches to the new agent and the request runs once
    more on it; the binding is repaired."""
    conns, _ = await _warm(w)
    w.dialer.kill(w.main.id)
    new = w.rebuild()
    assert await conns.run(lambda c: fake(c).call("ls")) == f"ls from {new.id}"
    assert conns.binding.agent_id == new.id
    assert fake(await conns.get_conn()).agent_id == new.id


async def test_gc8_non_retryable_request_reconnects_but_reraises(w: World) -> None:
    """GC-8 (non-idempotent): ``retry_request=False`` reconnects (the next call uses the
    fresh conn) but raises the original transport error instead of re-running."""
    conns, conn = await _warm(w)
    conn.broken = True
    calls = 0

    async def once(c: Conn) -> str:
        nonlocal calls
        calls += 1
        return await fake(c).call()

    with pytest.raises(AgentTransportError):
        await conns.run(once, retry_request=False)
    assert calls == 1
    fresh = conns.cached_conn
    assert fresh is not None and fresh is not conn


async def test_gc8_unsent_request_is_retried_even_when_not_idempotent(w: World) -> None:
    """GC-8 (tether): a failure before the request left (connect refused — e.g. the
    workspace was rebuilt and its build event lost) cannot have run anything, so even a
    ``retry_request=False`` request runs once more on the fresh conn."""
    conns, conn = await _warm(w)
    seen: list[Conn] = []

    async def once(c: Conn) -> str:
        seen.append(c)
        if len(seen) == 1:
            raise AgentTransportError("connect refused", sent=False)
        return "ran"

    assert await conns.run(once, retry_request=False) == "ran"
    assert seen[0] is conn and seen[1] is not conn


async def test_gc9_connecting_agent_is_kept(w: World) -> None:
    """GC-9: a never-connected agent within its timeout is ``connecting``; the hit keeps
    the cached conn (and makes no store call)."""
    conns, conn = await _warm(w)
    connecting = replace(
        w.main,
        created_at=w.clock.now() - timedelta(seconds=10),
        first_connected_at=None,
        last_connected_at=None,
    )
    w.store.add_agent(connecting)
    assert compute_agent_status(connecting, w.clock.now(), 30) is AgentStatus.CONNECTING
    assert await conns.get_conn() is conn
    assert w.store.queries == []


async def test_gc10_dial_timeout(w: World) -> None:
    """GC-10: the dial hangs; the 10 ms dial timeout (clock time) → DialTimeout, no conn,
    and validation (5 s delay) never ran."""
    w.dialer.script(w.main.id, DialPlan.hang())
    conns = w.conns(w.bind(w.main), delay=5, dial_timeout=0.01)
    task = asyncio.create_task(conns.get_conn())
    await w.clock.wait_for_sleepers(2)
    w.clock.advance(0.01)
    with pytest.raises(DialTimeout) as info:
        await task
    assert info.value.remediation == "retry once"
    assert conns.cached_conn is None
    assert LATEST_AGENTS not in w.store.query_names


async def test_gc11_parent_cancelled_is_not_dial_timeout(w: World) -> None:
    """GC-11: the caller is cancelled right after the dial starts → CancelledError, not
    DialTimeout; the hung dial is cancelled."""
    w.dialer.script(w.main.id, DialPlan.hang())
    conns = w.conns(w.bind(w.main), dial_timeout=600)
    task = asyncio.create_task(conns.get_conn())
    await w.dialer.wait_for_dials(1)
    task.cancel("user interrupt")
    with pytest.raises(asyncio.CancelledError):
        await task
    await w.drain.wait_idle()
    assert w.dialer.calls[0].outcome == "cancelled"
    assert conns.cached_conn is None


async def test_gc12_dial_error_not_misclassified_as_timeout(w: World) -> None:
    """GC-12: an immediate "authentication failed" (validated: same agent) stays a wrapped
    dial error, not DialTimeout."""
    w.dialer.script(w.main.id, DialPlan.fail("authentication failed"))
    conns = w.conns(w.bind(w.main))
    with pytest.raises(AgentUnreachable, match="authentication failed") as info:
        await conns.get_conn()
    assert not isinstance(info.value, DialTimeout)
    assert isinstance(info.value.__cause__, AgentTransportError)


@pytest.mark.parametrize("delay", [5.0, 0.25])
async def test_gc13_stopped_workspace_hung_dial_fails_after_delay(w: World, delay: float) -> None:
    """GC-13: stale binding of a stopped workspace, the dial hangs → WorkspaceStopped when
    the validation delay fires (Coder 5 s; tether default 0.25 s, inside the 0.5 s
    target of docs/behaviour.md §7); state cleared."""
    w.store.stop(w.ws)
    w.dialer.script(w.main.id, DialPlan.hang())
    conns = w.conns(w.bind(w.main), delay=delay)
    task = asyncio.create_task(conns.get_conn())
    await w.clock.wait_for_sleepers(2)
    w.clock.advance(delay * 0.9)
    await settle()
    assert not task.done()
    w.clock.advance(delay * 0.1)
    with pytest.raises(WorkspaceStopped):
        await task
    assert w.clock.monotonic() == pytest.approx(delay)
    assert conns.cached_agent is None and conns.cached_conn is None


async def test_gc14_stopped_workspace_fast_failing_dial_is_immediate(w: World) -> None:
    """GC-14: as GC-13 but the dial fails fast → WorkspaceStopped with no time passing."""
    w.store.stop(w.ws)
    w.dialer.script(w.main.id, DialPlan.fail())
    conns = w.conns(w.bind(w.main))
    with pytest.raises(WorkspaceStopped):
        await conns.get_conn()
    assert w.clock.monotonic() == 0


async def test_gc15_rebuilt_workspace_old_dial_hangs(w: World) -> None:
    """GC-15: the old agent black-holes; at the delay validation finds the new agent, the
    stale dial is cancelled, the new one dialled and the binding written."""
    old = w.main
    new = w.rebuild()
    w.dialer.script(old.id, DialPlan.hang())
    conns = w.conns(w.bind(old))
    task = asyncio.create_task(conns.get_conn())
    await w.clock.wait_for_sleepers(2)
    w.clock.advance(5)
    conn = fake(await task)
    assert conn.agent_id == new.id
    assert w.store.chats[w.chat_id].agent_id == new.id
    await w.drain.wait_idle()
    assert w.dialer.calls[0].outcome == "cancelled"


async def test_gc16_unreachable_same_build_agent_dial_times_out(w: World) -> None:
    """GC-16: the bound agent is the latest one but its dial hangs: validation at 5 s
    confirms it, the call keeps waiting, and at 30 s → DialTimeout."""
    w.dialer.script(w.main.id, DialPlan.hang())
    conns = w.conns(w.bind(w.main))
    task = asyncio.create_task(conns.get_conn())
    await w.clock.wait_for_sleepers(2)
    w.clock.advance(5)
    await settle()
    assert w.store.query_names.count(LATEST_AGENTS) == 1
    w.clock.advance(24.9)
    await settle()
    assert not task.done()
    w.clock.advance(0.1)
    with pytest.raises(DialTimeout):
        await task


async def test_gc17_no_dialer_is_connector_not_configured(w: World) -> None:
    """GC-17: no dialer → ConnectorNotConfigured at once, no store call."""
    conns = w.conns(w.bind(w.main), connector=False)
    with pytest.raises(ConnectorNotConfigured):
        await conns.get_conn()
    assert w.store.queries == []


async def test_gc18_concurrent_misses_share_one_conn(w: World) -> None:
    """GC-18: two calls miss together. tether makes misses single-flight: one dial, both
    callers get the same conn, and no other conn is left open."""
    gate = asyncio.Event()
    w.dialer.script(w.main.id, DialPlan.gated(gate))
    conns = w.conns(w.bind(w.main))
    first = asyncio.create_task(conns.get_conn())
    second = asyncio.create_task(conns.get_conn())
    await w.dialer.wait_for_dials(1)
    gate.set()
    a, b = await asyncio.gather(first, second)
    assert a is b
    assert w.dialer.dialed == [w.main.id]
    await w.drain.wait_idle()
    assert w.dialer.open_conns() == [a]


async def test_gc19_rebound_during_dial_retries_new_workspace(w: World) -> None:
    """GC-19: a tool binds another workspace while the dial runs → the new conn is closed
    and the connect retries against the new workspace."""
    ws2 = uuid.uuid4()
    other = agent_row(ws2, uuid.uuid4(), name="other")
    w.store.add_latest(ws2, other)
    gate = asyncio.Event()
    w.dialer.script(w.main.id, DialPlan.gated(gate))
    conns = w.conns(w.bind(w.main))
    task = asyncio.create_task(conns.get_conn())
    await w.dialer.wait_for_dials(1)
    conns.select_workspace(w.store.add_chat(ChatBinding(w.chat_id, ws2)))
    gate.set()
    conn = fake(await task)
    assert conn.agent_id == other.id
    await w.drain.wait_idle()
    (first,) = w.dialer.conns_for(w.main.id)
    assert first.close_calls == 1
    assert conns.binding.agent_id == other.id


async def test_gc19_rebound_twice_is_workspace_changed(w: World) -> None:
    """GC-19: re-bound during both attempts → WorkspaceChanged; every conn closed."""
    conns = w.conns(w.bind(w.main))

    def rebind(_agent_id: uuid.UUID) -> None:
        ws = uuid.uuid4()
        w.store.add_latest(ws, agent_row(ws, uuid.uuid4()))
        conns.select_workspace(w.store.add_chat(ChatBinding(w.chat_id, ws)))

    w.dialer.on_dial = rebind
    with pytest.raises(WorkspaceChanged, match="chat workspace changed while connecting"):
        await conns.get_conn()
    await w.drain.wait_idle()
    assert len(w.dialer.conns) == 2
    assert w.dialer.open_conns() == []


async def test_gc20_headers_for_child_and_root_chats(w: World) -> None:
    """GC-20: a subagent's conn carries its chat id and the parent in the ancestors list
    (JSON); a root chat's ancestors list is empty."""
    parent = uuid.uuid4()
    child = w.conns(w.bind(w.main, parent_chat_id=parent))
    conn = fake(await child.get_conn())
    assert conn.headers[CHAT_ID_HEADER] == str(w.chat_id)
    assert json.loads(conn.headers[ANCESTOR_CHAT_IDS_HEADER]) == [str(parent)]

    root_id = uuid.uuid4()
    root_binding = w.store.add_chat(ChatBinding(root_id, w.ws, w.build, w.main.id))
    root = w.conns(root_binding)
    conn = fake(await root.get_conn())
    assert conn.headers[CHAT_ID_HEADER] == str(root_id)
    assert json.loads(conn.headers[ANCESTOR_CHAT_IDS_HEADER]) == []


async def test_gc21_switch_with_failing_binding_write(w: World) -> None:
    """GC-21: the dial switched but writing the binding fails → the new conn is closed,
    a typed error names the write, nothing is cached."""
    stale = w.main
    current = w.rebuild()
    w.dialer.script(stale.id, DialPlan.fail())
    conns = w.conns(w.bind(stale))
    w.store.fail(UPDATE, RuntimeError("disk full"))
    with pytest.raises(TetherError, match="persist workspace agent binding: disk full"):
        await conns.get_conn()
    await w.drain.wait_idle()
    (new_conn,) = w.dialer.conns_for(current.id)
    assert new_conn.close_calls == 1
    assert conns.cached_conn is None


# --- gate and eviction --------------------------------------------------------------------


async def test_gate_checks_latest_build_and_evicts_when_stopped(w: World) -> None:
    """docs/behaviour.md §4.3: with a full binding and nothing cached, the gate asks the latest
    build; no agent → WorkspaceStopped and cached state dropped."""
    conns = w.conns(w.bind(w.main))
    assert await conns.gate_agent_id() == w.main.id
    assert w.store.query_names == [LATEST_AGENTS]
    w.store.stop(w.ws)
    conns.forget_gate()  # the next turn
    with pytest.raises(WorkspaceStopped):
        await conns.gate_agent_id()
    assert conns.cached_agent is None


async def test_cold_dial_goes_to_the_agent_the_gate_found(w: World) -> None:
    """docs/behaviour.md §4.3: a cold turn's gate read the latest build; the miss that follows
    dials that build's agent straight away — the stale bound agent is never dialled, the
    switch is persisted, and the miss reads the agent row once more, nothing else."""
    stale = w.main
    current = w.rebuild()
    w.dialer.script(stale.id, DialPlan.hang())  # dialling it would wait for the delay
    conns = w.conns(w.bind(stale))
    assert await conns.gate_agent_id() == current.id
    conn = fake(await conns.get_conn())
    assert conn.agent_id == current.id
    assert w.dialer.dialed == [current.id]
    assert w.store.query_names == [LATEST_AGENTS, "get_agent", UPDATE]
    assert w.store.chats[w.chat_id].agent_id == current.id


async def test_gate_that_found_no_agent_makes_the_miss_check_before_dialling(w: World) -> None:
    """docs/behaviour.md §4.3: the gate saw the workspace stopped; the tool's miss that
    follows checks the latest build again instead of dialling the stopped agent."""
    conns = w.conns(w.bind(w.main))
    w.store.stop(w.ws)
    w.dialer.script(w.main.id, DialPlan.hang())
    with pytest.raises(WorkspaceStopped):
        await conns.gate_agent_id()
    with pytest.raises(WorkspaceStopped):
        await conns.get_conn()
    assert w.dialer.dialed == []


async def test_gate_answer_is_not_used_after_an_eviction(w: World) -> None:
    """An eviction (or a re-bind) since the gate's check voids its answer: the miss dials
    the bound agent and validates lazily, as without a gate."""
    stale = w.main
    conns = w.conns(w.bind(stale), delay=0.5)
    assert await conns.gate_agent_id() == stale.id
    current = w.rebuild()
    conns.evict()  # e.g. a transport failure; not a build event
    w.dialer.script(stale.id, DialPlan.fail())
    conn = fake(await conns.get_conn())
    assert conn.agent_id == current.id
    assert w.dialer.dialed == [stale.id, current.id]


async def test_gate_on_warm_conn_makes_no_query(w: World) -> None:
    """docs/behaviour.md §4.4: a warm turn costs zero resolution queries, so the gate answers from
    the cached conn's agent."""
    conns, _ = await _warm(w)
    assert await conns.gate_agent_id() == w.main.id
    assert w.store.queries == []


async def test_gate_without_agent_binding_binds_lazily(w: World) -> None:
    """docs/behaviour.md §4.3: without an agent binding the gate resolves (and writes) it."""
    conns = w.conns(w.bind())
    assert await conns.gate_agent_id() == w.main.id
    assert w.store.chats[w.chat_id].agent_id == w.main.id


async def test_evict_on_build_event_closes_and_next_call_redials(w: World) -> None:
    """docs/behaviour.md §4.7: a build-transition event evicts at once (tracked close); the
    next call resolves and dials again, here finding the rebuilt agent."""
    conns, conn = await _warm(w)
    new = w.rebuild()
    w.dialer.kill(w.main.id)
    conns.evict()
    assert conns.cached_conn is None
    fresh = fake(await conns.get_conn())
    assert fresh.agent_id == new.id
    await w.drain.wait_idle()
    assert conn.close_calls == 1
