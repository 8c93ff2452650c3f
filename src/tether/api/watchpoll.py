"""One database read per poll for every chats-watch stream of this process.

``GET /api/v1/me/chats/stream`` (``api/routers/chatwatch.py``) follows the caller's chats by
polling the database — the truth, as a change can come from any replica. Each stream used
to run its own query every ``ChatService.stream_poll_s``: a hundred open browser tabs were a
hundred queries a second on an otherwise idle server. :class:`ChatWatchPoller` runs one
query per poll for all of them — the changed rows of every owner being watched — and hands
each stream the rows of its own owner only; it runs only while a stream is open.

Cursor: rows stamped up to :data:`SKEW` before the newest one seen are read again (and
skipped by each stream when unchanged), as replicas' clocks and commit order may stamp a
later commit a little earlier. A full batch moves on without the margin, from its last row
(its stamp and id: rows are read in that order, so a batch of many rows stamped alike —
one PostgreSQL transaction's ``now()`` — pages on rather than reading itself again), and
the next read follows at once. A new stream takes its baseline with a
query of its own (what the list it loads after ``ready`` shows) and pulls the shared
cursor back to its start, so nothing committed meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock
from tether.db.chatreads import chats_changed_since
from tether.domain.chat import Chat

log = logging.getLogger(__name__)

SKEW = timedelta(seconds=2)
BATCH = 200  # changed rows read per query; a full batch is followed by the next at once
OWNERS_PER_QUERY = 500  # owners in one query's IN list


@functools.total_ordering
@dataclass(frozen=True)
class Cursor:
    """Where the next read starts: rows stamped ``at`` or later, except, with ``after``,
    the rows stamped exactly ``at`` up to that id (read already, by a full batch). Ordered
    by how far on it is: a page's cursor is past the plain one of the same moment."""

    at: datetime
    after: uuid.UUID | None = None

    def __lt__(self, other: Cursor) -> bool:
        return self._key() < other._key()

    def _key(self) -> tuple[datetime, int]:
        return self.at, -1 if self.after is None else self.after.int


class WatchSubscription:
    """One stream's share: the latest row of each of its owner's chats that changed since
    the stream last took them (a chat changed twice meanwhile is there once, as it is now:
    the buffer is bounded by the owner's chats)."""

    def __init__(self, owner_id: uuid.UUID, started: datetime) -> None:
        self.owner_id = owner_id
        self.started = started
        self._pending: dict[uuid.UUID, Chat] = {}
        self._wake = asyncio.Event()

    def offer(self, chat: Chat) -> None:
        self._pending[chat.id] = chat
        self._wake.set()

    async def take(self, timeout: float) -> list[Chat]:
        """The rows offered since the last take (oldest change first), after waiting up to
        ``timeout`` seconds for one."""
        if not self._pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        self._wake.clear()
        rows = sorted(self._pending.values(), key=lambda c: c.updated_at)
        self._pending.clear()
        return rows


class ChatWatchPoller:
    """The process's one poll of changed chats for its watch streams."""

    def __init__(self, engine: AsyncEngine, clock: Clock, poll_s: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self._poll_s = poll_s  # read at every poll (the service's setting)
        self._subs: dict[uuid.UUID, set[WatchSubscription]] = {}
        self._since: Cursor | None = None
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(
        self, owner_id: uuid.UUID
    ) -> AsyncIterator[tuple[list[Chat], WatchSubscription]]:
        """Watch ``owner_id``'s chats: yields the baseline rows (changed within :data:`SKEW`
        of now: the list the client loads next shows them) and the subscription the polls
        feed until the block ends."""
        started = self._clock.now() - SKEW
        baseline = await chats_changed_since(self._engine, [owner_id], started, limit=BATCH)
        sub = WatchSubscription(owner_id, started)
        self._subs.setdefault(owner_id, set()).add(sub)
        if self._since is None or Cursor(started) < self._since:
            self._since = Cursor(started)  # rows committed since the baseline are read again
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="chat-watch-poll")
        try:
            yield baseline, sub
        finally:
            subs = self._subs.get(owner_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[owner_id]
            if not self._subs and self._task is not None:  # the last stream: stop polling
                self._task.cancel()
                self._task = None
                self._since = None

    @property
    def running(self) -> bool:
        """Whether the poll runs (it does while a stream is open)."""
        return self._task is not None and not self._task.done()

    async def aclose(self) -> None:
        """Stop polling (the app's shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        """Poll until cancelled (by the last stream's end, or :meth:`aclose`)."""
        while True:
            await asyncio.sleep(self._poll_s())
            try:
                while await self.poll_once():
                    pass  # a full batch moved the cursor: read on at once
            except Exception as err:  # the streams wait for the next poll
                log.warning("polling watched chats failed: %s", err)

    async def poll_once(self) -> bool:
        """One shared read (one query per :data:`OWNERS_PER_QUERY` owners watched); True
        when a batch came back full and the cursor moved (more rows are waiting)."""
        since = self._since
        owners = list(self._subs)
        if since is None or not owners:
            return False
        full = False
        cursors: list[Cursor] = []
        for i in range(0, len(owners), OWNERS_PER_QUERY):
            rows = await chats_changed_since(
                self._engine,
                owners[i : i + OWNERS_PER_QUERY],
                since.at,
                limit=BATCH,
                after_id=since.after,
            )
            for chat in rows:
                for sub in self._subs.get(chat.owner_id, ()):
                    sub.offer(chat)
            if rows:
                chunk_full = len(rows) >= BATCH
                full = full or chunk_full
                last = rows[-1]
                cursors.append(
                    Cursor(last.updated_at, last.id)
                    if chunk_full
                    else Cursor(last.updated_at - SKEW)
                )
        current = self._since
        if not cursors or current is None or current < since:
            return False  # nothing new, or a new stream pulled the cursor back meanwhile
        moved = max(since, min(cursors))  # the slowest chunk sets it: none is skipped
        self._since = moved
        return full and moved > since
