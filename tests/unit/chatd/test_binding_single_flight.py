"""Parallel pre-LLM steps (instruction files, MCP discovery) resolve the same chat at once:
the lazy bind and the pre-dial gate are single-flight, so a cold turn binds once; the gate's
answer is memoised in one place, the chat's connections (docs/behaviour.md §4.3)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tether.chatd.binding import AgentResolver, ChatBinding, ChatConnections
from tether.chatd.taskowner import TaskOwner
from tether.errors import WorkspaceStopped
from tether.testing.clock import FakeClock
from tether.testing.fake_binding_store import FakeBindingStore, agent_row
from tether.testing.fake_dialer import FakeDialer


def _world() -> tuple[FakeBindingStore, ChatBinding, uuid.UUID]:
    store = FakeBindingStore()
    ws, build = uuid.uuid4(), uuid.uuid4()
    main = store.add_latest(ws, agent_row(ws, build, name="main"))
    assert main is not None
    binding = store.add_chat(ChatBinding(uuid.uuid4(), ws))
    return store, binding, main.id


async def test_concurrent_lazy_binds_query_and_write_once() -> None:
    store, binding, main = _world()
    resolver = AgentResolver(binding, store)
    for _ in range(3):  # each latest-build read yields, as a real query does
        store.before("latest_build_agents", lambda: asyncio.sleep(0.01))
    agents = await asyncio.gather(*(resolver.ensure_workspace_agent() for _ in range(3)))
    assert {a.id for a in agents} == {main}
    assert store.query_names == ["latest_build_agents", "update_build_agent_binding"]


async def test_concurrent_gates_share_one_latest_build_check() -> None:
    store, binding, main = _world()
    store.add_chat(binding.with_agent(store.agents[main].build_id, main))
    drain = TaskOwner("test")
    conns = ChatConnections(
        store.chats[binding.chat_id],
        store=store,
        dialer=FakeDialer(),
        clock=FakeClock(),
        drain=drain,
    )
    for _ in range(3):
        store.before("latest_build_agents", lambda: asyncio.sleep(0.01))
    try:
        ids = await asyncio.gather(conns.gate_agent_id(), conns.gate_agent_id())
        assert ids == [main, main]
        assert store.query_names == ["latest_build_agents"]
        # the answer holds: a later call of the same turn makes no query
        assert await conns.gate_agent_id() == main
        assert store.query_names == ["latest_build_agents"]
        # a new turn (or a workspace made ready) forgets it: the next call checks again
        conns.forget_gate()
        await conns.gate_agent_id()
        assert store.query_names == ["latest_build_agents", "latest_build_agents"]
        # so does an eviction (a build event, a transport failure)
        conns.evict()
        await conns.gate_agent_id()
        assert store.query_names == ["latest_build_agents"] * 3
    finally:
        await drain.aclose()


async def test_a_stopped_answer_is_kept_and_an_untyped_failure_is_not() -> None:
    store, binding, main = _world()
    store.add_chat(binding.with_agent(store.agents[main].build_id, main))
    drain = TaskOwner("test")
    conns = ChatConnections(
        store.chats[binding.chat_id],
        store=store,
        dialer=FakeDialer(),
        clock=FakeClock(),
        drain=drain,
    )
    try:
        store.stop(binding.workspace_id)
        for _ in range(2):  # the second step of the turn gets the same typed answer
            with pytest.raises(WorkspaceStopped):
                await conns.gate_agent_id()
        assert store.query_names == ["latest_build_agents"]
        conns.forget_gate()
        store.fail("latest_build_agents", RuntimeError("connection reset"))
        with pytest.raises(RuntimeError):
            await conns.gate_agent_id()
        with pytest.raises(WorkspaceStopped):  # not remembered: asked again
            await conns.gate_agent_id()
        assert store.query_names == ["latest_build_agents"] * 3
    finally:
        await drain.aclose()
