"""The stream relay (tether.chatd.relay): hub events leave in publication order, batched per
chat; what cannot be relayed whole (dropped, truncated, a lost connection) makes receivers
re-read the database instead of silently missing events."""

from __future__ import annotations

import uuid

from tether.chatd.relay import RESYNC, StreamRelay, decode, stream_channel
from tether.chatd.stream import REBASE_COUNTER, ChatStreamHub
from tether.db.pubsub import RECONNECTED, TRUNCATED, InProcessBus


async def test_hub_events_are_relayed_in_order_with_their_ids():
    bus = InProcessBus()
    relay = StreamRelay(bus)
    hub = ChatStreamHub()
    hub.relay = relay.offer
    chat, other = uuid.uuid4(), uuid.uuid4()
    async with bus.subscribe(stream_channel(chat)) as sub:
        published = [hub.publish(chat, "message_part", {"delta": str(i)}) for i in range(50)]
        hub.publish(other, "status", {"status": "running"})
        await relay.flush()
        got = []
        while len(got) < len(published):
            payload = await sub.get(timeout=1)
            assert payload is not None
            got.extend(decode(payload))
    assert got == published
    assert relay.sent == 2  # one NOTIFY per chat for the whole batch


async def test_big_batches_split_below_the_notify_limit():
    bus = InProcessBus()
    relay = StreamRelay(bus)
    chat = uuid.uuid4()
    hub = ChatStreamHub()
    hub.relay = relay.offer
    async with bus.subscribe(stream_channel(chat)) as sub:
        published = [hub.publish(chat, "message_part", {"delta": "x" * 1000}) for _ in range(20)]
        await relay.flush()
        got = []
        for _ in range(relay.sent):
            payload = await sub.get(timeout=1)
            assert payload is not None
            got.extend(decode(payload))
    assert relay.sent > 1 and got == published


async def test_dropped_truncated_or_reconnected_means_resync():
    bus = InProcessBus()
    relay = StreamRelay(bus, max_pending=3)
    chat = uuid.uuid4()
    hub = ChatStreamHub()
    hub.relay = relay.offer
    async with bus.subscribe(stream_channel(chat)) as sub:
        for i in range(5):  # two more than fit: the oldest are dropped
            hub.publish(chat, "message_part", {"delta": str(i)})
        await relay.flush()
        first = await sub.get(timeout=1)
        assert first is not None
        assert [e.event for e in decode(first)] == [RESYNC]
    for payload in (TRUNCATED, RECONNECTED, {"e": [["x"]]}, {"e": "nope"}):
        assert [e.event for e in decode(payload)] == [RESYNC]


def test_a_claim_rebases_after_the_api_process_events():
    """A worker that claims a chat whose last message another process persisted numbers its
    events after the ones that process published (so relayed ids never collide)."""
    hub = ChatStreamHub()
    chat = uuid.uuid4()
    hub.ensure_base(chat, 4)
    assert hub.publish(chat, "status", {"status": "running"}).id == f"4.{REBASE_COUNTER + 1}"
    hub.ensure_base(chat, 4)  # same base (same process published the message): no jump
    assert hub.publish(chat, "status", {"status": "x"}).id == f"4.{REBASE_COUNTER + 2}"
