"""Relaying chats' stream events between replicas (PostgreSQL).

The stream hub (:mod:`tether.chatd.stream`) lives in the process that runs the chat. A
client streaming the chat through another process (another replica, or a process that
only serves the API) used to see persisted messages and status only, and only at the
stream's database poll (``stream_poll_s``). With a relay, every event the hub publishes —
part deltas, status, errors, queue updates, persisted messages — is also sent on the bus
channel :data:`STREAM_CHANNEL`, keeping the hub's ids, so
:func:`tether.chatd.follow.follow_chat` in any process merges them with its own hub and its
database catch-up, in id order and without duplicates.

Cost per process, not per stream: publishing never blocks the turn
(:meth:`StreamRelay.offer` appends to a bounded queue) and one sender task drains it in
order, packing the events of all chats into as few NOTIFYs as the payload limit allows;
one subscription per process (:meth:`StreamRelay.run`) hands received events to the local
streams that watch the chat — no LISTEN/UNLISTEN per stream. The bus stays a hint
(:mod:`tether.db.pubsub`): an event that does not fit a NOTIFY, a full queue or a lost
connection makes the affected streams re-read the database (:data:`RESYNC`), so persisted
messages and status are never lost; only ephemeral deltas can be (as for a subscriber that
falls behind on one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

from tether.chatd.stream import StreamEvent
from tether.db.pgbus import PG_MAX_PAYLOAD_BYTES
from tether.db.pubsub import EventBus

log = logging.getLogger(__name__)

STREAM_CHANNEL = "chat_streams"
MAX_PENDING = 50_000  # events waiting to be sent; beyond this the oldest are dropped
BATCH_BYTES = PG_MAX_PAYLOAD_BYTES - 512  # room for the bus's own envelope
RESYNC = "resync"  # a pseudo-event: re-read the chat from the database
RETRY_LOST_S = 1.0  # after a failed send, the lost-chats marker is retried this often
_RESYNC_EVENT = StreamEvent(0, 0, RESYNC, {})


def decode(payload: dict[str, Any]) -> tuple[list[tuple[uuid.UUID, StreamEvent]], bool]:
    """The ``(chat_id, event)`` pairs of one relayed payload, and whether every watcher must
    re-read the database (the payload was truncated by the bus, the bus reconnected, or it
    is malformed). Chats whose events were dropped come back as a :data:`RESYNC` event."""
    raw = payload.get("e")
    lost = payload.get("lost", [])
    if not isinstance(raw, list) or not isinstance(lost, list):
        return [], True
    out: list[tuple[uuid.UUID, StreamEvent]] = []
    try:
        out.extend((uuid.UUID(str(chat)), _RESYNC_EVENT) for chat in lost)
        for chat, seq, n, event, data in raw:
            out.append((uuid.UUID(str(chat)), StreamEvent(int(seq), int(n), str(event), data)))
    except (TypeError, ValueError):
        return [], True
    return out, False


class StreamRelay:
    """Sends this process's hub events to the other replicas and delivers theirs to the
    local streams watching a chat (:meth:`watch`)."""

    def __init__(self, bus: EventBus, *, max_pending: int = MAX_PENDING) -> None:
        self._bus = bus
        self._origin = uuid.uuid4().hex  # our own publications come back on a shared bus
        self._pending: deque[tuple[uuid.UUID, StreamEvent]] = deque()
        self._max_pending = max_pending
        self._lost: set[uuid.UUID] = set()  # chats whose events were dropped since last send
        self._wake = asyncio.Event()
        self._watchers: dict[uuid.UUID, set[asyncio.Queue[StreamEvent]]] = {}
        self._listening = False  # run() holds its subscription
        self.sent = 0  # NOTIFYs sent (tests, benchmarks)

    def live(self) -> bool:
        """Whether other replicas' events reach this process now: :meth:`run` listens and
        the bus is connected. While it is, streams treat their database poll as a fallback
        (:class:`tether.chatd.follow.Pacing`); events lost meanwhile come back as
        :data:`RESYNC` (a reconnect, a dropped or failed send, a full queue)."""
        return self._listening and bool(getattr(self._bus, "connected", True))

    # --- sending ---------------------------------------------------------------------------

    def offer(self, chat_id: uuid.UUID, event: StreamEvent) -> None:
        """Queue one hub event for relaying (never blocks, never raises)."""
        if len(self._pending) >= self._max_pending:
            dropped_chat, _ = self._pending.popleft()
            self._lost.add(dropped_chat)
        self._pending.append((chat_id, event))
        self._wake.set()

    async def flush(self) -> None:
        """Send everything queued now, in order, in as few NOTIFYs as fit. While the bus is
        disconnected nothing would arrive: the chats are sent as lost once it is back."""
        if not getattr(self._bus, "connected", True):
            self._lost.update(c for c, _ in self._pending)
            self._pending.clear()
            return
        items = [[str(c), e.seq, e.n, e.event, e.data] for c, e in self._pending]
        self._pending.clear()
        lost, self._lost = [str(c) for c in self._lost], set()
        for i, chunk in enumerate(_chunks(items) or [[]]):
            if chunk or (lost and i == 0):
                await self._send({"o": self._origin, "e": chunk, "lost": lost if i == 0 else []})

    async def _send(self, payload: dict[str, Any]) -> None:
        try:
            await self._bus.publish(STREAM_CHANNEL, payload)
            self.sent += 1
        except Exception as exc:  # the bus is a hint: the receivers re-read these chats
            log.warning("relaying stream events failed: %s", exc)
            self._lost.update(uuid.UUID(str(c)) for c in payload.get("lost", ()))
            self._lost.update(uuid.UUID(item[0]) for item in payload.get("e", ()))

    # --- receiving ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self, chat_id: uuid.UUID, queue: asyncio.Queue[StreamEvent]) -> Iterator[None]:
        """Deliver the chat's relayed events into ``queue`` while the block is open (a full
        queue loses its oldest event, as the hub does for a stalled subscriber)."""
        self._watchers.setdefault(chat_id, set()).add(queue)
        try:
            yield
        finally:
            queues = self._watchers.get(chat_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._watchers[chat_id]

    def deliver(self, payload: dict[str, Any]) -> None:
        """Hand one received payload to the local watchers."""
        if payload.get("o") == self._origin:
            return  # our own events: our streams had them from the hub
        events, everyone = decode(payload)
        if everyone:
            for chat_id in list(self._watchers):
                self._put(chat_id, _RESYNC_EVENT)
            return
        for chat_id, ev in events:
            self._put(chat_id, ev)

    def _put(self, chat_id: uuid.UUID, ev: StreamEvent) -> None:
        for queue in self._watchers.get(chat_id, ()):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(ev)

    # --- the background job --------------------------------------------------------------

    async def run(self) -> None:
        """Send and receive until cancelled (a background job of the server)."""
        async with self._bus.subscribe(STREAM_CHANNEL) as sub, asyncio.TaskGroup() as tg:
            tg.create_task(self._send_loop(), name="stream-relay-send")
            dropped = getattr(sub, "dropped", 0)
            self._listening = True
            try:
                async for payload in sub:
                    if getattr(sub, "dropped", 0) != dropped:  # the bus dropped some for us
                        dropped = getattr(sub, "dropped", 0)
                        self.deliver({})  # malformed: every watcher re-reads
                    self.deliver(payload)
            finally:
                self._listening = False

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if self._lost:  # a send failed: tell the receivers once the bus is back
                await asyncio.sleep(RETRY_LOST_S)
                self._wake.set()


def _chunks(items: list[list[Any]]) -> list[list[list[Any]]]:
    """``items`` split so each chunk's JSON stays under :data:`BATCH_BYTES`; an item too big
    on its own is sent alone (the bus turns it into a truncation marker → resync)."""
    chunks: list[list[list[Any]]] = []
    current: list[list[Any]] = []
    size = 0
    for item in items:
        n = len(json.dumps(item, default=str, separators=(",", ":")).encode()) + 1
        if current and size + n > BATCH_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += n
    if current:
        chunks.append(current)
    return chunks
