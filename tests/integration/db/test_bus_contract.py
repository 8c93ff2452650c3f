"""The EventBus contract, run against InProcessBus and PostgresBus; then PostgresBus between
replicas (two buses on one server), oversized payloads and reconnection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tether.db.pgbus import PostgresBus
from tether.db.pubsub import RECONNECTED, TRUNCATED, EventBus, InProcessBus


@pytest.fixture(params=["inprocess", pytest.param("postgres", marks=pytest.mark.postgres)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "inprocess":
        yield InProcessBus()
        return
    async with PostgresBus(request.getfixturevalue("pg_dsn")) as pg_bus:
        yield pg_bus


async def test_subscribe_then_publish_is_received(bus: EventBus) -> None:
    async with bus.subscribe("chat:1") as sub:
        await bus.publish("chat:1", {"kind": "update", "n": 1})
        assert await sub.get(timeout=5) == {"kind": "update", "n": 1}


async def test_two_subscribers_both_receive(bus: EventBus) -> None:
    async with bus.subscribe("c") as a, bus.subscribe("c") as b:
        await bus.publish("c", {"n": 1})
        assert await a.get(timeout=5) == {"n": 1}
        assert await b.get(timeout=5) == {"n": 1}


async def test_other_channels_are_not_received(bus: EventBus) -> None:
    async with bus.subscribe("mine") as sub:
        await bus.publish("other", {"n": 1})
        await bus.publish("mine", {"n": 2})
        assert await sub.get(timeout=5) == {"n": 2}
        assert await sub.get(timeout=0.05) is None


async def test_publish_without_subscribers_is_fine(bus: EventBus) -> None:
    await asyncio.wait_for(bus.publish("nobody", {"n": 1}), timeout=5)


async def test_get_times_out_with_none(bus: EventBus) -> None:
    async with bus.subscribe("quiet") as sub:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await sub.get(timeout=0.1) is None
        assert 0.09 <= loop.time() - started < 1.0


async def test_unsubscribed_channel_stops_receiving(bus: EventBus) -> None:
    async with bus.subscribe("c") as first:
        pass
    async with bus.subscribe("c") as second:
        await bus.publish("c", {"n": 1})
        assert await second.get(timeout=5) == {"n": 1}
    assert await first.get(timeout=0) is None


async def test_events_arrive_in_order(bus: EventBus) -> None:
    async with bus.subscribe("c") as sub:
        for i in range(20):
            await bus.publish("c", {"i": i})
        assert [await sub.get(timeout=5) for _ in range(20)] == [{"i": i} for i in range(20)]


# --- PostgresBus between replicas -------------------------------------------------------


@pytest.fixture
async def two_buses(pg_dsn: str) -> AsyncIterator[tuple[PostgresBus, PostgresBus]]:
    async with PostgresBus(pg_dsn) as a, PostgresBus(pg_dsn) as b:
        yield a, b


async def test_replicas_wake_each_other(two_buses: tuple[PostgresBus, PostgresBus]) -> None:
    a, b = two_buses
    async with a.subscribe("chat:x") as on_a, b.subscribe("chat:x") as on_b:
        await a.publish("chat:x", {"from": "a"})
        assert await on_a.get(timeout=5) == {"from": "a"}
        assert await on_b.get(timeout=5) == {"from": "a"}
        # a's own NOTIFY comes back from the server, but must not be delivered twice
        assert await on_a.get(timeout=0.2) is None


async def test_oversized_payload_reaches_replicas_as_marker(
    two_buses: tuple[PostgresBus, PostgresBus],
) -> None:
    a, b = two_buses
    big = {"blob": "x" * 10_000}
    async with a.subscribe("c") as on_a, b.subscribe("c") as on_b:
        await a.publish("c", big)
        assert await on_a.get(timeout=5) == big  # local subscribers get the real thing
        assert await on_b.get(timeout=5) == TRUNCATED


async def test_reconnects_after_connection_loss(pg_dsn: str) -> None:
    async with (
        PostgresBus(pg_dsn, reconnect_delay_s=0.05) as a,
        PostgresBus(pg_dsn) as b,
        a.subscribe("c") as on_a,
    ):
        victim = a._own_pid  # the listening backend
        admin = await asyncpg.connect(pg_dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", victim)
        finally:
            await admin.close()
        # subscribers are told they may have missed events, then LISTEN is restored
        assert await on_a.get(timeout=10) == RECONNECTED
        assert a.reconnects == 1 and a.connected
        await b.publish("c", {"after": "reconnect"})
        assert await on_a.get(timeout=5) == {"after": "reconnect"}


async def test_start_fails_in_time_without_a_server() -> None:
    from tether.errors import Timeout

    bus = PostgresBus(
        "postgresql://postgres@127.0.0.1:1/postgres", connect_timeout_s=0.3, reconnect_delay_s=0.05
    )
    with pytest.raises(Timeout):
        await bus.start()
    assert not bus.connected
