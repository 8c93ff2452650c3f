"""A chat the worker forgets (``worker_chat_idle_s``) is freed by reference counting, not
left to the cycle collector (issue #12, the soak's memory growth).

The server freezes its start-up heap and runs young collections rarely
(``src/tether/gctune.py``): a chat's kept state, tools and pydantic-ai agent live for many
turns, so they reach the oldest generation, and garbage there waits for a full
collection, which CPython runs only once that generation has grown by a quarter. A reference
cycle through a forgotten chat's state kept ≈ 400 objects per forgotten chat (its ~17 tools,
each with a pydantic-core validator) until then; a soak that forgets and rebuilds chats
grew by tens of MB before each full collection, and the freed pages stayed fragmented."""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from chatd_env import Chatd
from pydantic_ai import RunContext
from pydantic_ai.usage import RunUsage

from tether.chatd.turn.agents import turn_agent
from tether.chatd.worker import ChatWorker
from tether.llm.scripted import Call, Say, script_model


@contextmanager
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _run_context() -> RunContext[None]:
    """A step's run context, as the agent lists the chat's tools with it."""
    return RunContext(deps=None, model=script_model([]), usage=RunUsage(), max_retries=3)


async def _idle(worker: ChatWorker, chat_id: uuid.UUID) -> None:
    """Until the worker counts the chat's turn as ended (its idle clock started)."""
    async with asyncio.timeout(10):
        while True:
            if chat_id not in worker.running:
                break
            await asyncio.sleep(0.01)


async def test_a_forgotten_chat_state_tools_and_agent_go_by_reference_counting(
    chatd: Chatd,
) -> None:
    ws, _ = await chatd.create_workspace()
    worker = chatd.start_worker(chat_idle_s=3600.0)
    chat = await chatd.new_chat("one", script_model([Say("k")]), workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    await _idle(worker, chat.id)
    # The state and agent that ran a turn may stay referenced for a while by the event
    # loop's cancelled timers (their contexts hold pydantic-ai's run context, which holds
    # the agent), so the chat forgotten here is a twin whose state and tools are made as a
    # turn makes them, without running one.
    twin = replace(chat, id=uuid.uuid4())
    state = worker._state_for(twin)
    made = turn_agent(worker._deps, twin, state)
    assert state.turn_agent is made and made.toolset is not None
    assert "execute" in await made.toolset.get_tools(_run_context())  # kept listed
    worker._idle_since[twin.id] = worker._deps.clock.monotonic()
    alive = [weakref.ref(o) for o in (state, state.conns, made, made.ctx, made.agent)]
    del made, state
    with no_cycle_collector():
        worker._chat_idle_s = 0.0
        assert twin.id in await worker.forget_idle()
        assert [ref() for ref in alive] == [None] * len(alive)


async def test_a_chat_rebuilding_its_tools_frees_the_old_ones_by_reference_counting(
    chatd: Chatd,
) -> None:
    """Plan mode on or off changes the tool set (PL-9): the chat's old tools and agent go
    as soon as the new ones replace them."""
    ws, _ = await chatd.create_workspace()
    worker = chatd.start_worker(chat_idle_s=3600.0)
    chat = await chatd.new_chat("one", script_model([Say("k")]), workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    await _idle(worker, chat.id)
    state = worker.state(chat.id)
    assert state is not None
    state.turn_agent = None
    old = turn_agent(worker._deps, chat, state)
    assert old.toolset is not None and await old.toolset.get_tools(_run_context())
    alive = [weakref.ref(o) for o in (old, old.ctx, old.agent, old.toolset)]
    del old
    with no_cycle_collector():
        new = turn_agent(worker._deps, replace(chat, plan_mode=True), state)
        assert new.built == 2 and state.turn_agent is new
        assert [ref() for ref in alive] == [None] * len(alive)


def _cyclic_garbage() -> Counter[str]:
    """The types of what only the cycle collector would free now (then freed)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
    return found


# What a chat keeps across turns, and a turn's own workspace view: none of it may be left in
# a reference cycle (a turn's own pydantic-ai and HTTP objects may; they die young).
CHAT_TYPES = {
    "ChatState",
    "ChatConnections",
    "ToolContext",
    "TurnAgent",
    "TurnSlot",
    "ChatToolset",
    "TurnWorkspace",
    "McpTurn",
    "Lifecycle",
    "Agent",
}


async def test_turns_and_a_forgotten_chat_leave_nothing_of_the_chat_in_a_cycle(
    chatd: Chatd,
) -> None:
    ws, _ = await chatd.create_workspace()
    worker = chatd.start_worker(chat_idle_s=3600.0)
    steps = [Call("execute", {"command": "true"}), Say("k")]
    chat = await chatd.new_chat("one", script_model(steps * 3), workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    await _idle(worker, chat.id)
    with no_cycle_collector():
        for text in ("two", "three"):
            await chatd.send(chat.id, text)
            await chatd.wait_status(chat.id)
            await _idle(worker, chat.id)
        assert not CHAT_TYPES & set(_cyclic_garbage())
        worker._chat_idle_s = 0.0
        assert await worker.forget_idle() == [chat.id]
        left = _cyclic_garbage()
        assert not CHAT_TYPES & set(left), left
