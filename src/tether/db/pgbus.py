"""The event bus across replicas: :class:`PostgresBus`, LISTEN/NOTIFY over one dedicated
asyncpg connection, so replicas sharing a PostgreSQL database wake each other; local
subscribers receive local publications directly (``db/pubsub.py`` has the bus contract and
the in-process bus)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from tether.cancellation import cancel_and_wait
from tether.clock import Clock, SystemClock
from tether.db.pubsub import (
    DEFAULT_QUEUE_SIZE,
    RECONNECTED,
    TRUNCATED,
    LocalFanout,
    Subscription,
    to_json_payload,
)
from tether.errors import Timeout

log = logging.getLogger(__name__)


# PostgreSQL rejects NOTIFY payloads of 8000 bytes or more; the channel name is an identifier
# of at most 63 bytes.
PG_MAX_PAYLOAD_BYTES = 7999
PG_MAX_IDENTIFIER = 63
_CLEAN_CHANNEL = re.compile(r"[a-z0-9_]+")


def pg_channel(channel: str, prefix: str = "tether_") -> str:
    """The PostgreSQL channel for a logical channel name: ``prefix + channel`` when that is
    a short lower-case identifier, else a sanitised stem plus a hash (≤ 63 chars, stable)."""
    plain = prefix + channel
    if _CLEAN_CHANNEL.fullmatch(channel) and len(plain) <= PG_MAX_IDENTIFIER:
        return plain
    digest = hashlib.sha256(channel.encode()).hexdigest()[:16]
    stem = re.sub(r"[^a-z0-9_]", "_", channel.lower())
    stem = stem[: PG_MAX_IDENTIFIER - len(prefix) - len(digest) - 1]
    return f"{prefix}{stem}_{digest}"


def encode_notification(channel: str, payload: dict[str, Any]) -> str:
    """The NOTIFY payload: the logical channel plus the event, or a truncation marker."""
    text = json.dumps({"c": channel, "p": payload}, default=str, separators=(",", ":"))
    if len(text.encode()) <= PG_MAX_PAYLOAD_BYTES:
        return text
    return json.dumps({"c": channel, "p": TRUNCATED}, separators=(",", ":"))


_PgErrors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresBus:
    """An :class:`EventBus` over PostgreSQL LISTEN/NOTIFY.

    Owns one dedicated connection and a supervisor task that reconnects after a loss (then
    delivers :data:`RECONNECTED` to every local subscriber, since events may have been
    missed). Use ``async with PostgresBus(dsn) as bus`` or :meth:`start` / :meth:`close`.
    Publishing while disconnected still reaches local subscribers; remote ones miss it.
    """

    def __init__(
        self,
        dsn: str,
        *,
        clock: Clock | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        connect_timeout_s: float = 10.0,
        op_timeout_s: float = 5.0,
        reconnect_delay_s: float = 1.0,
        channel_prefix: str = "tether_",
    ) -> None:
        self._dsn = make_url(dsn).set(drivername="postgresql").render_as_string(False)
        self._clock: Clock = clock or SystemClock()
        self._fanout = LocalFanout(queue_size)
        self._connect_timeout_s = connect_timeout_s
        self._op_timeout_s = op_timeout_s
        self._reconnect_delay_s = reconnect_delay_s
        self._prefix = channel_prefix
        self._lock = asyncio.Lock()  # one operation at a time on the connection
        self._conn: asyncpg.Connection | None = None
        self._connected = asyncio.Event()
        self._own_pid: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    @property
    def dropped(self) -> int:
        """Events dropped because a local subscriber's queue was full."""
        return self._fanout.dropped

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect (within ``connect_timeout_s``, else :class:`tether.errors.Timeout`)."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._supervise(), name="pg-event-bus")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._connected.wait()
        except TimeoutError as exc:
            await self.close()
            raise Timeout("could not connect the event bus to PostgreSQL") from exc

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def __aenter__(self) -> PostgresBus:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        self._fanout.deliver(channel, json.loads(to_json_payload(payload)))
        message = encode_notification(channel, payload)
        name = pg_channel(channel, self._prefix)
        await self._on_connection(
            lambda conn: conn.execute("SELECT pg_notify($1, $2)", name, message)
        )

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe(channel)

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub, first = self._fanout.add(channel)
        name = pg_channel(channel, self._prefix)
        try:
            if first:
                await self._on_connection(lambda conn: self._sync_listener(conn, name))
            yield sub
        finally:
            if self._fanout.remove(sub):
                await self._on_connection(lambda conn: self._sync_listener(conn, name))

    async def _sync_listener(self, conn: asyncpg.Connection, name: str) -> None:
        # Decided under the connection lock, so a racing subscribe/unsubscribe pair on the
        # same channel always leaves LISTEN matching the current subscribers.
        if name in self._pg_channels():
            await conn.add_listener(name, self._on_notify)
        else:
            await conn.remove_listener(name, self._on_notify)

    def _pg_channels(self) -> set[str]:
        return {pg_channel(c, self._prefix) for c in self._fanout.channels()}

    async def _on_connection(self, op: Callable[[asyncpg.Connection], Awaitable[object]]) -> None:
        # Best effort: a failure only costs remote wake-ups, and breaks the connection so the
        # supervisor reconnects (and re-LISTENs everything).
        async with self._lock:
            conn = self._conn
            if conn is None:
                return
            try:
                async with asyncio.timeout(self._op_timeout_s):
                    await op(conn)
            except _PgErrors as exc:
                log.warning("event bus: operation failed: %r; reconnecting", exc)
                conn.terminate()

    def _on_notify(self, _conn: object, pid: int, _pg_channel: str, raw: str) -> None:
        if pid == self._own_pid:
            return  # our own publication; local subscribers already have it
        try:
            data = json.loads(raw)
            channel, payload = data["c"], data["p"]
        except (ValueError, KeyError, TypeError):
            log.warning("event bus: ignoring malformed notification %.200r", raw)
            return
        if isinstance(channel, str) and isinstance(payload, dict):
            self._fanout.deliver(channel, payload)

    async def _supervise(self) -> None:
        while True:
            conn = await self._connect()
            if conn is None:
                await self._clock.sleep(self._reconnect_delay_s)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            if conn.is_closed():  # died before the listener was in place
                lost.set()
            try:
                await lost.wait()
            finally:
                self._connected.clear()
                async with self._lock:
                    self._conn = None
                await _close_quietly(conn)
            self.reconnects += 1
            log.warning("event bus: lost its PostgreSQL connection; reconnecting")
            await self._clock.sleep(self._reconnect_delay_s)

    async def _connect(self) -> asyncpg.Connection | None:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout_s)
            async with self._lock:
                # Channels subscribed to while disconnected are LISTENed here; later ones by
                # their subscriber (which waits for this lock).
                async with asyncio.timeout(self._op_timeout_s):
                    for name in self._pg_channels():
                        await conn.add_listener(name, self._on_notify)
                self._own_pid = conn.get_server_pid()
                self._conn = conn
        except _PgErrors as exc:
            log.warning("event bus: cannot connect to PostgreSQL: %r", exc)
            if conn is not None:
                conn.terminate()
            return None
        except BaseException:  # cancelled by close(): do not leak the connection
            if conn is not None:
                conn.terminate()
            raise
        if self.reconnects:
            self._fanout.deliver_all(RECONNECTED)
        self._connected.set()
        return conn


async def _close_quietly(conn: asyncpg.Connection) -> None:
    # A graceful close spares the server an "unexpected EOF"; a dead or slow one is cut.
    if not conn.is_closed():
        with contextlib.suppress(*_PgErrors):
            await conn.close(timeout=1.0)
    if not conn.is_closed():
        conn.terminate()
