"""Relaying a chat's stream events between replicas (PostgreSQL).

The stream hub (:mod:`tether.chatd.stream`) lives in the process that runs the chat. A
client streaming the chat through another process (another replica, or a process that
only serves the API) used to see persisted messages and status only, and only at the
stream's database poll (``stream_poll_s``). With a relay, every event the hub publishes —
part deltas, status, errors, queue updates, persisted messages — is also sent on the
chat's bus channel (:func:`stream_channel`), keeping the hub's ids, so
:func:`tether.chatd.follow.follow_chat` in any process merges them with its own hub and
its database catch-up, in id order and without duplicates.

Publishing never blocks the turn: :meth:`StreamRelay.offer` appends to a bounded queue and
one sender task (:meth:`StreamRelay.run`, a background job of the server) drains it in
order, one NOTIFY per chat per batch. The bus stays a hint (:mod:`tether.db.pubsub`): an
event that does not fit a NOTIFY, a full queue or a lost connection makes receivers
re-read the database (:data:`RESYNC`), so persisted messages and status are never lost;
only ephemeral deltas can be (as for a subscriber that falls behind on one process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from typing import Any

from tether.chatd.stream import StreamEvent
from tether.db.pubsub import PG_MAX_PAYLOAD_BYTES, EventBus

log = logging.getLogger(__name__)

MAX_PENDING = 50_000  # events waiting to be sent; beyond this the oldest are dropped
BATCH_BYTES = PG_MAX_PAYLOAD_BYTES - 512  # room for the bus's own envelope
RESYNC = "resync"  # a pseudo-event: re-read the chat from the database


def stream_channel(chat_id: uuid.UUID) -> str:
    """The bus channel of one chat's stream events."""
    return f"stream:{chat_id}"


def decode(payload: dict[str, Any]) -> list[StreamEvent]:
    """The events of one relayed payload; ``[resync]`` when the payload cannot be trusted
    to be complete (truncated by the bus, bus reconnected, events dropped, malformed)."""
    raw = payload.get("e")
    if not isinstance(raw, list) or payload.get("lost"):
        return [StreamEvent(0, 0, RESYNC, {})]
    out: list[StreamEvent] = []
    for item in raw:
        try:
            seq, n, event, data = item
            out.append(StreamEvent(int(seq), int(n), str(event), dict(data)))
        except (TypeError, ValueError):
            return [StreamEvent(0, 0, RESYNC, {})]
    return out


class StreamRelay:
    """Sends hub events to the chats' bus channels, in publication order."""

    def __init__(self, bus: EventBus, *, max_pending: int = MAX_PENDING) -> None:
        self._bus = bus
        self._pending: deque[tuple[uuid.UUID, StreamEvent]] = deque()
        self._max_pending = max_pending
        self._lost: set[uuid.UUID] = set()  # chats whose events were dropped since last send
        self._wake = asyncio.Event()
        self.sent = 0  # NOTIFYs sent (tests, benchmarks)

    def offer(self, chat_id: uuid.UUID, event: StreamEvent) -> None:
        """Queue one hub event for relaying (never blocks, never raises)."""
        if len(self._pending) >= self._max_pending:
            dropped_chat, _ = self._pending.popleft()
            self._lost.add(dropped_chat)
        self._pending.append((chat_id, event))
        self._wake.set()

    async def run(self) -> None:
        """Send until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send everything queued now: per chat, its events in order, as few NOTIFYs as the
        payload limit allows."""
        batch: dict[uuid.UUID, list[list[Any]]] = {}
        while self._pending:
            chat_id, ev = self._pending.popleft()
            batch.setdefault(chat_id, []).append([ev.seq, ev.n, ev.event, ev.data])
        lost, self._lost = self._lost, set()
        for chat_id in lost:
            await self._send(chat_id, {"lost": True})
        for chat_id, items in batch.items():
            for chunk in _chunks(items):
                await self._send(chat_id, {"e": chunk})

    async def _send(self, chat_id: uuid.UUID, payload: dict[str, Any]) -> None:
        try:
            await self._bus.publish(stream_channel(chat_id), payload)
            self.sent += 1
        except Exception as exc:  # the bus is a hint; receivers still poll the database
            log.warning("relaying chat %s stream events failed: %s", chat_id, exc)


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
