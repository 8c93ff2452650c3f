"""Following one chat's stream from a resume point, without loss or duplicates.

:func:`follow_chat` yields what a subscriber (the SSE endpoint) sends, in order:

1. persisted messages with ``seq > s`` from the database (``message``, id ``"<seq>.0"``);
2. a ``status`` snapshot of the chat row (no id: it is state, not history);
3. the hub's buffered ephemeral events after the resume point;
4. live hub events, plus a database poll and a keep-alive every ``ping_s``. The poll runs
   every ``poll_s`` while another process may change the chat unseen (polling is the
   truth); while ``complete()`` says this process's event sources see every change (one
   SQLite process; a connected stream relay, :mod:`tether.chatd.relay`) it is only a
   fallback, every ``fallback_poll_s``. A :data:`~tether.chatd.relay.RESYNC` (relayed events
   were lost) re-reads the database at once either way.

It subscribes to the hub *before* reading the database, so nothing published meanwhile is
missed, and tracks the highest ``(seq, n)`` sent: a ``message`` with ``seq`` at or below
the last sent seq, or an ephemeral event at or below the last ``(seq, n)``, is a duplicate
and skipped. An event that follows a message this subscriber has not seen yet first
pulls the missing messages from the database, so ids only ever increase. Event ids are
those of :mod:`tether.chatd.stream`; resuming with the last id received continues exactly
where the previous connection stopped (as long as the hub still buffers those events).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tether.chatd.relay import RESYNC, StreamRelay
from tether.chatd.stream import ChatStreamHub, StreamEvent, message_json
from tether.db.chats import ChatStore
from tether.domain.chat import Chat, StoredMessage

CATCH_UP_PAGE = 200
DRAIN_BATCH = 500


@dataclass(frozen=True)
class Outgoing:
    """One thing to send. ``event is None`` means a keep-alive comment."""

    event: str | None
    data: dict[str, Any] | None = None
    id: str | None = None


PING = Outgoing(None)


def status_data(chat: Chat) -> dict[str, Any]:
    """The payload of a ``status`` stream event."""
    return {
        "status": chat.status.value,
        "last_error": chat.last_error,
        "last_error_code": chat.last_error_code,
    }


class _Cursor:
    """What this subscriber has sent so far; decides what is new."""

    def __init__(self, store: ChatStore, chat_id: uuid.UUID, after: tuple[int, int]) -> None:
        self._store = store
        self._chat_id = chat_id
        self.last = after
        self.status: str | None = None

    def _message(self, seq: int, data: dict[str, Any]) -> Outgoing:
        self.last = (seq, 0)
        return Outgoing("message", data, f"{seq}.0")

    async def catch_up(self) -> list[Outgoing]:
        """Persisted messages after the last sent one."""
        out: list[Outgoing] = []
        while True:
            page: list[StoredMessage] = await self._store.messages(
                self._chat_id, after_seq=self.last[0], limit=CATCH_UP_PAGE
            )
            out.extend(self._message(m.seq, message_json(m)) for m in page)
            if len(page) < CATCH_UP_PAGE:
                return out

    async def accept(self, ev: StreamEvent) -> list[Outgoing]:
        """What to send for a hub event (possibly nothing, possibly a DB catch-up first)."""
        last_seq = self.last[0]
        if ev.event == "message":
            if ev.seq <= last_seq:
                return []
            if ev.seq == last_seq + 1:
                return [self._message(ev.seq, ev.data)]
            return await self.catch_up()  # a gap: the DB has everything up to ev.seq
        if (ev.seq, ev.n) <= self.last:
            return []
        out: list[Outgoing] = []
        if ev.seq > last_seq:
            # it follows a message we have not sent yet; send that first
            out = await self.catch_up()
            if (ev.seq, ev.n) <= self.last:
                return out
        self.last = (ev.seq, ev.n)
        if ev.event == "status" and isinstance(ev.data.get("status"), str):
            self.status = ev.data["status"]
        out.append(Outgoing(ev.event, ev.data, ev.id))
        return out

    async def poll_status(self, *, always: bool = False) -> list[Outgoing]:
        chat = await self._store.get(self._chat_id)
        if not always and chat.status.value == self.status:
            return []
        self.status = chat.status.value
        return [Outgoing("status", status_data(chat))]


@dataclass(frozen=True)
class Pacing:
    """How often a follower re-reads the database and sends a keep-alive.

    ``complete``: whether this process's event sources currently see every change of the
    chat; while it says so, the poll runs every ``fallback_poll_s`` instead of ``poll_s``.
    None: never (poll every ``poll_s``)."""

    poll_s: float = 1.0
    ping_s: float = 15.0
    fallback_poll_s: float = 30.0
    complete: Callable[[], bool] | None = None

    def next_poll_in(self) -> float:
        if self.complete is not None and self.complete():
            return max(self.poll_s, self.fallback_poll_s)
        return self.poll_s


async def follow_chat(
    store: ChatStore,
    hub: ChatStreamHub,
    chat_id: uuid.UUID,
    *,
    after: tuple[int, int] = (0, 0),
    poll_s: float = 1.0,
    ping_s: float = 15.0,
    should_stop: Callable[[], Awaitable[bool]] | None = None,
    remote: StreamRelay | None = None,
) -> AsyncIterator[Outgoing]:
    """Yield the chat's stream after ``after`` (``(seq, n)``) until ``should_stop`` says so
    (checked at least every ``poll_s``) or the consumer stops iterating.

    ``remote``: the relay of other replicas' hub events (:mod:`tether.chatd.relay`); they
    are merged with this process's hub events (same ids, so duplicates are skipped)."""
    pacing = Pacing(poll_s=poll_s, ping_s=ping_s)
    batches = follow_chat_batches(
        store, hub, chat_id, after=after, pacing=pacing, should_stop=should_stop, remote=remote
    )
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for item in batch:
                yield item


async def follow_chat_batches(
    store: ChatStore,
    hub: ChatStreamHub,
    chat_id: uuid.UUID,
    *,
    after: tuple[int, int] = (0, 0),
    pacing: Pacing = Pacing(),
    should_stop: Callable[[], Awaitable[bool]] | None = None,
    remote: StreamRelay | None = None,
    snapshot: Chat | None = None,
) -> AsyncGenerator[list[Outgoing]]:
    """:func:`follow_chat` in batches: everything ready at one wake-up comes as one list
    (never empty), so a consumer can encode and send it in one write.

    ``snapshot``: the chat row as read just before calling, used as the first ``status``
    instead of reading the row again. Only valid where every later status change reaches
    this process's hub (``pacing.complete``): a change published before the subscription is
    then replayed from the hub's buffer."""
    # Pacing here is wall-clock I/O (poll and keep-alive cadence), not domain time, so it
    # uses the event loop's clock rather than the injected Clock.
    cursor = _Cursor(store, chat_id, after)
    async with contextlib.AsyncExitStack() as stack:
        queue = await stack.enter_async_context(hub.subscribe(chat_id))
        if remote is not None:
            stack.enter_context(remote.watch(chat_id, queue))
        events = _follow(cursor, hub, chat_id, queue, pacing, should_stop, snapshot)
        async with contextlib.aclosing(events):
            async for batch in events:
                yield batch


async def _follow(
    cursor: _Cursor,
    hub: ChatStreamHub,
    chat_id: uuid.UUID,
    queue: asyncio.Queue[StreamEvent],
    pacing: Pacing,
    should_stop: Callable[[], Awaitable[bool]] | None,
    snapshot: Chat | None,
) -> AsyncGenerator[list[Outgoing]]:
    loop = asyncio.get_running_loop()
    out = await cursor.catch_up()
    if snapshot is not None:
        cursor.status = snapshot.status.value
        out.append(Outgoing("status", status_data(snapshot)))
    else:
        out.extend(await cursor.poll_status(always=True))
    for buffered in hub.buffered_after(chat_id, *cursor.last):
        out.extend(await cursor.accept(buffered))
    yield out
    next_poll = loop.time() + pacing.next_poll_in()
    next_ping = loop.time() + pacing.ping_s
    while True:
        if should_stop is not None and await should_stop():
            return
        ev: StreamEvent | None = None
        if not queue.empty():
            ev = queue.get_nowait()
        else:
            wait = max(0.0, min(next_poll, next_ping) - loop.time())
            try:
                async with asyncio.timeout(wait):
                    ev = await queue.get()
            except TimeoutError:
                pass
        out = []
        drained = 0
        while ev is not None:  # drain what is there (bounded) before the next check
            if ev.event == RESYNC:  # relayed events were lost: re-read the database now
                next_poll = loop.time()
            else:
                out.extend(await cursor.accept(ev))
            drained += 1
            ev = None if queue.empty() or drained >= DRAIN_BATCH else queue.get_nowait()
        now = loop.time()
        if now >= next_poll:
            next_poll = now + pacing.next_poll_in()
            out.extend(await cursor.catch_up())
            out.extend(await cursor.poll_status())
        if now >= next_ping:
            next_ping = now + pacing.ping_s
            out.append(PING)
        if out:
            yield out
