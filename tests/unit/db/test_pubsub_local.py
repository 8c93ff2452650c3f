"""InProcessBus specifics and the PostgreSQL channel/payload encoding (no server needed)."""

from __future__ import annotations

import asyncio
import json
import uuid

from tether.db.pgbus import PG_MAX_IDENTIFIER, PG_MAX_PAYLOAD_BYTES, encode_notification, pg_channel
from tether.db.pubsub import TRUNCATED, InProcessBus


async def test_slow_subscriber_drops_oldest_and_never_blocks_publisher() -> None:
    bus = InProcessBus(queue_size=3)
    async with bus.subscribe("c") as slow:
        for i in range(5):
            await asyncio.wait_for(bus.publish("c", {"i": i}), timeout=1)
        got = [await slow.get(timeout=0) for _ in range(4)]
    assert got == [{"i": 2}, {"i": 3}, {"i": 4}, None]
    assert bus.dropped == 2


async def test_payloads_are_json_copies() -> None:
    bus = InProcessBus()
    ident = uuid.uuid4()
    payload = {"id": ident, "nested": {"a": [1]}}
    async with bus.subscribe("c") as sub:
        await bus.publish("c", payload)
        payload["nested"]["a"].append(2)  # later mutation by the publisher is not seen
        assert await sub.get(timeout=1) == {"id": str(ident), "nested": {"a": [1]}}


async def test_iteration_ends_when_the_subscription_closes() -> None:
    bus = InProcessBus()
    received: list[dict[str, object]] = []
    opened = asyncio.Event()
    stop = asyncio.Event()

    async def consume() -> None:
        async with bus.subscribe("c") as sub:
            opened.set()
            reader = asyncio.create_task(_drain(sub, received))
            await stop.wait()
        await asyncio.wait_for(reader, timeout=1)  # the context exit ended the iterator

    task = asyncio.create_task(consume())
    await asyncio.wait_for(opened.wait(), timeout=1)
    await bus.publish("c", {"n": 1})
    await bus.publish("c", {"n": 2})
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(task, timeout=1)
    assert received == [{"n": 1}, {"n": 2}]


async def _drain(sub: object, out: list[dict[str, object]]) -> None:
    async for event in sub:  # type: ignore[attr-defined]
        out.append(event)


def test_clean_channel_names_keep_their_name() -> None:
    assert pg_channel("chat_updates") == "tether_chat_updates"


def test_other_channel_names_are_sanitised_and_hashed() -> None:
    a = pg_channel("chat:6f1c2d6e-1111-2222-3333-444455556666")
    b = pg_channel("chat:6f1c2d6e-1111-2222-3333-444455556667")
    long = pg_channel("x" * 200)
    for name in (a, b, long):
        assert len(name) <= PG_MAX_IDENTIFIER
        assert name.replace("_", "").isalnum() and name == name.lower()
    assert a != b
    assert a == pg_channel("chat:6f1c2d6e-1111-2222-3333-444455556666")  # stable
    assert pg_channel("Chat") != pg_channel("chat")


def test_oversized_payloads_become_a_truncation_marker() -> None:
    small = encode_notification("c", {"x": "y"})
    assert json.loads(small) == {"c": "c", "p": {"x": "y"}}
    big = encode_notification("c", {"x": "é" * PG_MAX_PAYLOAD_BYTES})
    assert json.loads(big) == {"c": "c", "p": TRUNCATED}
    assert len(big.encode()) <= PG_MAX_PAYLOAD_BYTES
