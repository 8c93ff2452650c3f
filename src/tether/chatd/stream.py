"""The per-chat stream hub: where a running turn publishes, and SSE subscribers listen.

Event ids are ``"<seq>.<n>"``: ``seq`` is the last *persisted* message of the chat the
event follows, ``n`` counts the ephemeral events (part deltas, status, retry, errors,
queue updates) published since that message. A persisted message itself has id
``"<seq>.0"``. A subscriber resuming after ``Last-Event-ID: s.n`` therefore needs the
persisted messages with ``seq > s`` (from the database) and the buffered ephemeral events
after ``n`` if the hub's current base is still ``s`` — nothing is lost or repeated.

The hub is in memory on the worker that runs the chat; the buffer of a chat is dropped
when a new message is persisted (it is then in the database) and is capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from tether.domain.chat import StoredMessage

MAX_BUFFER = 10_000
SUBSCRIBER_QUEUE = 10_000
REBASE_COUNTER = 1000  # see ChatStreamHub.ensure_base


@dataclass(frozen=True)
class StreamEvent:
    seq: int  # last persisted message seq this event follows (or is)
    n: int  # 0 for a persisted message, else the ephemeral counter since ``seq``
    event: str  # message_part | message | status | error | queue_update | retry
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.seq}.{self.n}"


def parse_event_id(value: str | None) -> tuple[int, int]:
    """``"s.n"`` → ``(s, n)``; missing or malformed → ``(0, 0)`` (from the start)."""
    if not value:
        return 0, 0
    seq, _, n = value.partition(".")
    try:
        return max(0, int(seq)), max(0, int(n or 0))
    except ValueError:
        return 0, 0


@dataclass
class _ChatState:
    base_seq: int = 0
    counter: int = 0
    buffer: list[StreamEvent] = field(default_factory=list)
    subscribers: set[asyncio.Queue[StreamEvent]] = field(default_factory=set)


class ChatStreamHub:
    def __init__(self) -> None:
        self._chats: dict[uuid.UUID, _ChatState] = {}
        # Also hands every published event to other processes (tether.chatd.relay; set on
        # PostgreSQL, where another replica may serve the chat's stream).
        self.relay: Callable[[uuid.UUID, StreamEvent], None] | None = None
        # Called with every persisted message published here (the history cache adopts
        # them: chatd/historycache.py).
        self.message_listeners: list[Callable[[StoredMessage], None]] = []

    def _state(self, chat_id: uuid.UUID) -> _ChatState:
        state = self._chats.get(chat_id)
        if state is None:
            state = self._chats[chat_id] = _ChatState()
        return state

    def _deliver(self, state: _ChatState, event: StreamEvent) -> None:
        for queue in list(state.subscribers):
            if queue.full():  # a stalled subscriber loses live events; it can resume by id
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def publish(self, chat_id: uuid.UUID, event: str, data: dict[str, Any]) -> StreamEvent:
        """Publish an ephemeral event (buffered until the next persisted message)."""
        state = self._state(chat_id)
        state.counter += 1
        ev = StreamEvent(state.base_seq, state.counter, event, data)
        state.buffer.append(ev)
        if len(state.buffer) > MAX_BUFFER:
            del state.buffer[: len(state.buffer) - MAX_BUFFER]
        self._deliver(state, ev)
        if self.relay is not None:
            self.relay(chat_id, ev)
        return ev

    def publish_message(self, message: StoredMessage) -> StreamEvent:
        """Publish a persisted message; resets the ephemeral buffer."""
        state = self._state(message.chat_id)
        if message.seq >= state.base_seq:
            state.base_seq = message.seq
            state.counter = 0
            state.buffer.clear()
        ev = StreamEvent(message.seq, 0, "message", message_json(message))
        for listener in self.message_listeners:
            listener(message)
        self._deliver(state, ev)
        if self.relay is not None:
            self.relay(message.chat_id, ev)
        return ev

    def ensure_base(self, chat_id: uuid.UUID, seq: int) -> None:
        """Make ``seq`` (the chat's last persisted message) the base of the events that
        follow, unless the hub already has a later one.

        A fresh process (after a restart, or a chat claimed from another replica) knows
        nothing of the chat's history, so its events would get ids ``0.n`` and a subscriber
        resuming after ``seq.m`` would drop them as old. The worker calls this when it claims
        a chat, before the turn publishes anything."""
        state = self._state(chat_id)
        if seq > state.base_seq:
            state.base_seq = seq
            # Another process (the API replica that persisted ``seq``) may have published
            # ephemeral events after it (status ``pending``, queue updates), numbered from 1
            # and relayed to the same subscribers (tether.chatd.relay): start after them.
            state.counter = REBASE_COUNTER
            state.buffer.clear()

    def buffered_after(self, chat_id: uuid.UUID, seq: int, n: int) -> list[StreamEvent]:
        """Ephemeral events after ``(seq, n)`` still in the buffer."""
        state = self._chats.get(chat_id)
        if state is None:
            return []
        if state.base_seq == seq:
            return [e for e in state.buffer if e.n > n]
        if state.base_seq > seq:
            return list(state.buffer)
        return []

    @contextlib.asynccontextmanager
    async def subscribe(self, chat_id: uuid.UUID) -> AsyncIterator[asyncio.Queue[StreamEvent]]:
        state = self._state(chat_id)
        queue: asyncio.Queue[StreamEvent] = asyncio.Queue(SUBSCRIBER_QUEUE)
        state.subscribers.add(queue)
        try:
            yield queue
        finally:
            state.subscribers.discard(queue)

    def forget(self, chat_id: uuid.UUID) -> None:
        """Drop an idle chat's state (no subscribers)."""
        state = self._chats.get(chat_id)
        if state is not None and not state.subscribers:
            self._chats.pop(chat_id, None)


def message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "chat_id": str(message.chat_id),
        "seq": message.seq,
        "role": message.role,
        "parts": message.parts,
        "visibility": message.visibility,
        "model": message.model,
        "created_at": message.created_at.isoformat(),
    }
