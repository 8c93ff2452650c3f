"""Liveness on the client side: a request in flight when its agent goes down fails at once
with ``agent_unreachable``; an interrupted exec keeps its output and process id. Over httpx's
fake transport, whose response never finishes (as a frozen agent's)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from tether.agentconn import AgentClient
from tether.agentconn.execstream import ExecStream, copy_partial
from tether.agentconn.liveness import (
    LIVENESS_CHANNEL,
    AgentLiveness,
    apply_event,
    down_event,
    follow_liveness,
    up_event,
)
from tether.db.pubsub import InProcessBus
from tether.errors import AgentTransportError, AgentUnreachable
from tether.settings import Settings

HANG_S = 30.0  # what the old behaviour would wait at least; every test ends far sooner


def frozen_agent(lines: list[dict[str, object]], started: asyncio.Event) -> httpx.MockTransport:
    """Answers with ``lines`` and then never again (the connection stays open)."""

    async def body() -> AsyncIterator[bytes]:
        for line in lines:
            yield (json.dumps(line) + "\n").encode()
        started.set()
        await asyncio.sleep(HANG_S)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            started.set()
            await asyncio.sleep(HANG_S)
        return httpx.Response(200, content=body())

    return httpx.MockTransport(handler)


def client(transport: httpx.MockTransport, down: asyncio.Event) -> AgentClient:
    return AgentClient(
        "agent.test:1",
        "s",
        connect_timeout=1,
        request_timeout=HANG_S * 2,
        exec_margin=HANG_S,
        down=down,
        transport=transport,
    )


async def test_exec_in_flight_fails_at_once_with_its_partial_output() -> None:
    liveness = AgentLiveness()
    agent_id = uuid.uuid4()
    started = asyncio.Event()
    transport = frozen_agent([{"process_id": "p7"}, {"output": "step 1\n"}], started)
    c = client(transport, liveness.signal(agent_id))
    call = asyncio.create_task(c.exec("long-job", timeout_s=HANG_S))
    await asyncio.wait_for(started.wait(), 5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    liveness.mark_down(agent_id, "no session frame for 3s")
    with pytest.raises(AgentUnreachable) as info:
        await asyncio.wait_for(call, 5)
    assert loop.time() - t0 < 1.0
    err = info.value
    assert err.code == "agent_unreachable"
    assert err.details["process_id"] == "p7"
    assert err.details["partial_output"] == "step 1\n"
    assert "step 1" in err.message and "p7" in err.message
    await c.aclose()


async def test_other_requests_fail_at_once_too() -> None:
    liveness = AgentLiveness()
    agent_id = uuid.uuid4()
    started = asyncio.Event()
    c = client(frozen_agent([], started), liveness.signal(agent_id))
    call = asyncio.create_task(c.health())
    await asyncio.wait_for(started.wait(), 5)
    liveness.mark_down(agent_id, "frozen")
    with pytest.raises(AgentUnreachable):
        await asyncio.wait_for(call, 1)
    with pytest.raises(AgentUnreachable):  # and so does every later request on the client
        await asyncio.wait_for(c.health(), 1)
    await c.aclose()


async def test_exec_deadline_keeps_partial_output() -> None:
    """No liveness signal at all: the exec's own deadline ends it, with what it received."""
    started = asyncio.Event()
    transport = frozen_agent([{"process_id": "p1"}, {"output": "half"}], started)
    c = AgentClient(
        "agent.test:1",
        "s",
        connect_timeout=0.1,
        request_timeout=HANG_S,
        exec_margin=0.2,
        transport=transport,
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(AgentTransportError) as info:
        await c.exec("x", timeout_s=0.3)
    assert loop.time() - t0 < 5.0
    assert info.value.details["partial_output"] == "half"
    assert info.value.details["process_id"] == "p1"
    await c.aclose()


def test_up_starts_a_new_epoch() -> None:
    liveness = AgentLiveness()
    agent_id = uuid.uuid4()
    old = liveness.signal(agent_id)
    heard: list[uuid.UUID] = []
    liveness.add_listener(lambda a, _r: heard.append(a))
    assert liveness.mark_down(agent_id, "silent")
    assert not liveness.mark_down(agent_id, "silent")  # once per epoch
    assert old.is_set() and liveness.is_down(agent_id) and heard == [agent_id]
    liveness.mark_up(agent_id)
    assert not liveness.is_down(agent_id)
    assert not liveness.signal(agent_id).is_set()
    assert old.is_set()  # clients of the old epoch stay failed


def test_bus_events_and_a_lost_bus_connection() -> None:
    liveness = AgentLiveness()
    a, b = uuid.uuid4(), uuid.uuid4()
    apply_event(liveness, down_event(a, "silent"))
    apply_event(liveness, down_event(b, "silent"))
    apply_event(liveness, {"type": "down", "agent_id": "not-a-uuid"})  # ignored
    assert liveness.is_down(a) and liveness.reason(a) == "silent"
    apply_event(liveness, up_event(a))
    assert not liveness.is_down(a) and liveness.is_down(b)
    apply_event(liveness, {"reconnected": True})  # events may be lost: drop stale marks
    assert not liveness.is_down(b)


def test_stream_caps_partial_output_and_copies_it() -> None:
    stream = ExecStream(cap_chars=4)
    stream.feed(json.dumps({"process_id": "p"}))
    stream.feed(json.dumps({"output": "abcdef"}))
    assert stream.output == "abcd" and stream.truncated
    source = AgentTransportError("x", process_id="p", partial_output="abcd")
    target = AgentUnreachable()
    copy_partial(source, target)
    assert target.details["process_id"] == "p" and "abcd" in target.message


async def test_follow_liveness_applies_bus_events_from_another_replica() -> None:
    """The replica running a chat learns of a silent agent through the bus."""
    bus = InProcessBus()
    liveness = AgentLiveness()
    agent_id = uuid.uuid4()
    signal = liveness.signal(agent_id)
    follower = asyncio.create_task(follow_liveness(liveness, bus))
    try:
        await asyncio.sleep(0)  # subscribed
        for _ in range(50):
            await bus.publish(LIVENESS_CHANNEL, down_event(agent_id, "silent"))
            if signal.is_set():
                break
            await asyncio.sleep(0.01)
        assert signal.is_set() and liveness.is_down(agent_id)
        await bus.publish(LIVENESS_CHANNEL, up_event(agent_id))
        for _ in range(200):
            if not liveness.is_down(agent_id):
                break
            await asyncio.sleep(0.01)
        assert not liveness.is_down(agent_id)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


def test_settings_refuse_a_bound_shorter_than_two_pings() -> None:
    assert Settings().agent_unreachable_after_s <= 3.0  # the default bound
    with pytest.raises(ValidationError):
        Settings(agent_ping_interval_s=2.0, agent_unreachable_after_s=3.0)


def test_agents_that_are_up_are_not_remembered_once_nobody_waits() -> None:
    liveness = AgentLiveness()
    for _ in range(100):
        liveness.signal(uuid.uuid4())  # each dialled once, its client gone at once
    gc.collect()
    assert len(liveness._up) == 0
    kept = liveness.signal(agent_id := uuid.uuid4())
    liveness.mark_down(agent_id, "silent")
    assert kept.is_set() and liveness.is_down(agent_id)
