"""The admin chat settings cached behind the bus (chatd/configcache.py): one read while
nothing changes, a write announced on the bus applies to the next read, a bus hint of lost
events or an old value forces a re-read, and without a subscription every read goes to the
database (the behaviour before the cache). Real database (both dialects), real bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.chatd.configcache import CHAT_CONFIG_CHANNEL, ConfigCache
from tether.db.chatconfig import ChatConfigStore
from tether.db.engine import StatementCounter
from tether.db.pubsub import RECONNECTED, InProcessBus
from tether.testing.clock import FakeClock

MAX_AGE_S = 30.0


@contextlib.asynccontextmanager
async def running(cache: ConfigCache, bus: InProcessBus) -> AsyncIterator[None]:
    task = asyncio.create_task(cache.run())
    await settle()
    assert cache.live
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle() -> None:
    """Let the cache's subscriber take the events already delivered to it."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_reads_once_while_nothing_changes(engine: AsyncEngine, clock: FakeClock) -> None:
    bus = InProcessBus()
    store = ChatConfigStore(engine, clock, bus)
    await store.set_system_prompt("be brief")
    cache = ConfigCache(store, bus, clock, max_age_s=MAX_AGE_S)
    async with running(cache, bus):
        with StatementCounter(engine) as counter, counter.measure() as m:
            for _ in range(5):
                assert (await cache.get()).system_prompt == "be brief"
        assert m.count == 1 and cache.reads == 1


async def test_an_announced_write_applies_to_the_next_read(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    bus = InProcessBus()
    store = ChatConfigStore(engine, clock, bus)
    cache = ConfigCache(store, bus, clock, max_age_s=MAX_AGE_S)
    async with running(cache, bus):
        assert (await cache.get()).user_prompt == ""
        await store.set_user_prompt("short answers")
        await settle()
        assert (await cache.get()).user_prompt == "short answers"
        assert cache.reads == 2


async def test_a_lost_events_hint_and_age_force_a_reread(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    bus = InProcessBus()
    store = ChatConfigStore(engine, clock)  # a writer that does not announce (e.g. by hand)
    cache = ConfigCache(store, bus, clock, max_age_s=MAX_AGE_S)
    async with running(cache, bus):
        await cache.get()
        await store.set_system_prompt("v2")
        assert (await cache.get()).system_prompt == ""  # cached: nothing announced it
        await bus.publish(CHAT_CONFIG_CHANNEL, RECONNECTED)  # the bus may have missed events
        await settle()
        assert (await cache.get()).system_prompt == "v2"
        await store.set_system_prompt("v3")
        clock.advance(MAX_AGE_S)
        assert (await cache.get()).system_prompt == "v3"  # too old: read again
        assert cache.reads == 3


async def test_without_a_subscription_every_read_goes_to_the_database(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    bus = InProcessBus()
    store = ChatConfigStore(engine, clock)
    cache = ConfigCache(store, bus, clock, max_age_s=MAX_AGE_S)
    await cache.get()
    await store.set_system_prompt("fresh")
    assert (await cache.get()).system_prompt == "fresh"
    async with running(cache, bus):
        await cache.get()
    await store.set_system_prompt("after")  # run() ended: nothing would invalidate a copy
    assert (await cache.get()).system_prompt == "after"
    assert cache.reads == 4
