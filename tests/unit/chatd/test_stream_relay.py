"""The stream relay (tether.chatd.relay): hub events leave in publication order, packed into
few NOTIFYs, and reach the local streams watching the chat in another process; what cannot
be relayed whole (dropped, truncated, a lost connection) makes those streams re-read the
database instead of silently missing events."""

from __future__ import annotations

import asyncio
import uuid

from tether.chatd.relay import RESYNC, STREAM_CHANNEL, StreamRelay
from tether.chatd.stream import REBASE_COUNTER, ChatStreamHub, StreamEvent
from tether.db.pubsub import RECONNECTED, TRUNCATED, InProcessBus


async def _relayed(sender: StreamRelay, receiver: StreamRelay, bus: InProcessBus) -> None:
    """Flush ``sender`` and deliver what it sent on ``bus`` to ``receiver``."""
    async with bus.subscribe(STREAM_CHANNEL) as sub:
        await sender.flush()
        while (payload := await sub.get(timeout=0.2)) is not None:
            receiver.deliver(payload)


async def test_events_reach_the_watchers_of_the_chat_in_another_process_in_order():
    bus = InProcessBus()
    sender, receiver = StreamRelay(bus), StreamRelay(bus)
    hub = ChatStreamHub()
    hub.relay = sender.offer
    chat, other = uuid.uuid4(), uuid.uuid4()
    watching: asyncio.Queue[StreamEvent] = asyncio.Queue()
    with receiver.watch(chat, watching):
        published = [hub.publish(chat, "message_part", {"delta": str(i)}) for i in range(50)]
        hub.publish(other, "status", {"status": "running"})  # nobody here watches it
        await _relayed(sender, receiver, bus)
    got = [watching.get_nowait() for _ in range(watching.qsize())]
    assert got == published
    assert sender.sent == 1  # both chats' events in one NOTIFY


async def test_own_events_are_not_delivered_twice():
    bus = InProcessBus()
    relay = StreamRelay(bus)
    hub = ChatStreamHub()
    hub.relay = relay.offer
    chat = uuid.uuid4()
    queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
    with relay.watch(chat, queue):
        hub.publish(chat, "status", {"status": "running"})
        await _relayed(relay, relay, bus)
    assert queue.empty()


async def test_big_batches_split_below_the_notify_limit():
    bus = InProcessBus()
    sender, receiver = StreamRelay(bus), StreamRelay(bus)
    chat = uuid.uuid4()
    hub = ChatStreamHub()
    hub.relay = sender.offer
    queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
    with receiver.watch(chat, queue):
        published = [hub.publish(chat, "message_part", {"delta": "x" * 1000}) for _ in range(20)]
        await _relayed(sender, receiver, bus)
    assert sender.sent > 1
    assert [queue.get_nowait() for _ in range(queue.qsize())] == published


async def test_dropped_truncated_or_reconnected_means_resync():
    bus = InProcessBus()
    sender, receiver = StreamRelay(bus, max_pending=3), StreamRelay(bus)
    chat, quiet = uuid.uuid4(), uuid.uuid4()
    hub = ChatStreamHub()
    hub.relay = sender.offer
    queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
    other: asyncio.Queue[StreamEvent] = asyncio.Queue()
    with receiver.watch(chat, queue), receiver.watch(quiet, other):
        for i in range(5):  # two more than fit: the oldest are dropped
            hub.publish(chat, "message_part", {"delta": str(i)})
        await _relayed(sender, receiver, bus)
        assert queue.get_nowait().event == RESYNC  # then the 3 events still queued
        assert [queue.get_nowait().data["delta"] for _ in range(3)] == ["2", "3", "4"]
        assert other.empty()
        for payload in (TRUNCATED, RECONNECTED, {"e": [["x"]]}, {"e": "nope"}):
            receiver.deliver(payload)  # every watcher re-reads
            assert queue.get_nowait().event == RESYNC
            assert other.get_nowait().event == RESYNC


def test_a_claim_rebases_after_the_api_process_events():
    """A worker that claims a chat whose last message another process persisted numbers its
    events after the ones that process published (so relayed ids never collide)."""
    hub = ChatStreamHub()
    chat = uuid.uuid4()
    hub.ensure_base(chat, 4)
    assert hub.publish(chat, "status", {"status": "running"}).id == f"4.{REBASE_COUNTER + 1}"
    hub.ensure_base(chat, 4)  # same base (same process published the message): no jump
    assert hub.publish(chat, "status", {"status": "x"}).id == f"4.{REBASE_COUNTER + 2}"


async def test_payloads_the_bus_dropped_for_a_slow_relay_mean_resync():
    """The relay's own bus subscription overflowed (its event loop was busy): the watchers
    re-read the database before the payloads that did arrive."""
    bus = InProcessBus(queue_size=2)
    receiver = StreamRelay(bus)
    chat = uuid.uuid4()
    queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
    with receiver.watch(chat, queue):
        task = asyncio.create_task(receiver.run())
        try:
            async with asyncio.timeout(5):
                await asyncio.sleep(0)  # it subscribes and waits for the first payload
                assert receiver.live()
                for i in range(5):  # no await point yields: the third on overflows
                    event = [str(chat), 1, i + 1, "message_part", {"delta": str(i)}]
                    await bus.publish(STREAM_CHANNEL, {"o": "elsewhere", "e": [event]})
                got = [await queue.get() for _ in range(3)]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [e.event for e in got] == [RESYNC, "message_part", "message_part"]
    assert [e.data["delta"] for e in got[1:]] == ["3", "4"]
    assert not receiver.live()
