"""A SQLite driver for SQLAlchemy's async engine that runs every ``sqlite3`` call on the
event loop's own thread (issue #12).

aiosqlite hands each statement, fetch, commit and rollback to a thread of its own and
back: a queue hand-off, a thread wake-up, ``call_soon_threadsafe`` and a loop wake-up,
about five hand-offs per statement. A statement of a chat turn takes tens of
microseconds; the hand-offs cost far more. Here the statement simply runs.

The one thing that must not run on the loop is a wait for another connection's lock:
SQLite's busy handler sleeps in the calling thread. So these connections have no busy
timeout (``timeout=0``, ``PRAGMA busy_timeout=0``); a statement or commit that meets
``SQLITE_BUSY`` ("database is locked") sleeps with :func:`asyncio.sleep` (SQLite's own
backoff: 1, 2, 5 … 100 ms) and runs again, until ``busy_wait_s`` has passed since the
first attempt; then the last error is raised, as SQLite's busy timeout would.
``SQLITE_BUSY_SNAPSHOT`` (a read transaction whose snapshot another connection's commit
made stale) cannot succeed by waiting and is raised at once, as SQLite does. One
difference: SQLite does not wait at all when a connection that holds a read transaction
asks for the write lock; this driver waits for it too (the holder commits or rolls back;
if it committed, the retry meets ``SQLITE_BUSY_SNAPSHOT`` and fails).

Cancellation: the only point where a task can be suspended inside a statement is that
backoff sleep, and a statement that met ``SQLITE_BUSY`` has had no effect (SQLite resets
it), so a cancellation never cuts a statement in half. SQLAlchemy invalidates a
connection whose statement raised ``CancelledError``; closing a ``sqlite3`` connection
rolls its transaction back on the spot, so no lock survives the cancelled task.

Everything else is SQLAlchemy's pysqlite dialect: same ``sqlite3`` connections, same
transaction behaviour (the module opens a transaction before the first write), same
types. URLs name it ``sqlite+tetherloop``; :func:`tether.db.engine.normalise_url`
rewrites the other SQLite forms to it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import ConnectArgsType
from sqlalchemy.util.concurrency import await_

DRIVER = "tetherloop"
DEFAULT_BUSY_WAIT_S = 5.0

# SQLite's busy handler sleeps these many milliseconds between attempts (sqliteDefaultBusyCallback).
_BACKOFF_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)
_SQLITE_BUSY = 5
_SQLITE_BUSY_SNAPSHOT = _SQLITE_BUSY | (2 << 8)

T = TypeVar("T")


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """``SQLITE_BUSY`` that waiting may cure (any busy code but ``SQLITE_BUSY_SNAPSHOT``)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # no code attached: judge by the message, as SQLite words it
        return str(exc) == "database is locked"
    return code & 0xFF == _SQLITE_BUSY and code != _SQLITE_BUSY_SNAPSHOT


async def run(busy_wait_s: float, step: Callable[..., T], *args: Any) -> T:
    """``step(*args)``, run again after an asynchronous backoff while SQLite is busy."""
    try:
        return step(*args)
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise
    loop = asyncio.get_running_loop()
    deadline = loop.time() + busy_wait_s
    attempt = 0
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return step(*args)  # the last attempt: its BUSY is the caller's error
        delay = _BACKOFF_MS[min(attempt, len(_BACKOFF_MS) - 1)] / 1000
        attempt += 1
        await asyncio.sleep(min(delay, remaining))
        try:
            return step(*args)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or loop.time() >= deadline:
                raise


class LoopCursor(sqlite3.Cursor):
    """A ``sqlite3`` cursor whose ``execute``/``executemany`` wait for a busy database
    without blocking the loop. Each call passes once through :func:`await_` (SQLAlchemy's
    async engine insists that an execution awaits); it suspends only to back off."""

    connection: LoopConnection

    def execute(self, sql: str, parameters: Any = (), /) -> LoopCursor:
        await_(run(self.connection.busy_wait_s, super().execute, sql, parameters))
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> LoopCursor:
        await_(run(self.connection.busy_wait_s, super().executemany, sql, seq_of_parameters))
        return self

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's async results on every cursor; rows are fetched
        synchronously here, so there is nothing to prepare."""


class LoopConnection(sqlite3.Connection):
    """A ``sqlite3`` connection whose cursors are :class:`LoopCursor` and whose commit
    waits for a busy database without blocking the loop."""

    busy_wait_s: float = DEFAULT_BUSY_WAIT_S

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or LoopCursor)

    def commit(self) -> None:
        if self.in_transaction:  # nothing to commit otherwise: no await, no round trip
            await_(run(self.busy_wait_s, super().commit))


class LoopDBAPI:
    """The DBAPI module the dialect sees: ``sqlite3`` with :class:`LoopConnection`."""

    paramstyle = "qmark"

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)  # errors, Binary, sqlite_version_info, PARSE_*

    def connect(self, *args: Any, busy_wait_s: float, **kwargs: Any) -> LoopConnection:
        kwargs["timeout"] = 0.0  # never sleep in SQLite's busy handler on the loop
        conn = sqlite3.connect(*args, factory=LoopConnection, **kwargs)
        assert isinstance(conn, LoopConnection)
        conn.busy_wait_s = busy_wait_s
        return conn


class SQLiteLoopDialect(SQLiteDialect_pysqlite):
    """SQLAlchemy's pysqlite dialect as an async dialect over :class:`LoopDBAPI`."""

    driver = DRIVER
    is_async = True
    supports_statement_cache = True
    supports_server_side_cursors = False

    def __init__(self, busy_wait_s: float = DEFAULT_BUSY_WAIT_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.busy_wait_s = busy_wait_s

    @classmethod
    def import_dbapi(cls) -> Any:
        return LoopDBAPI()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool  # one shared connection for an in-memory database

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        args, kwargs = super().create_connect_args(url)
        kwargs["busy_wait_s"] = self.busy_wait_s
        return args, kwargs


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteLoopDialect")
