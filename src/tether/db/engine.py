"""The database engine: one async SQLAlchemy engine for SQLite (``sqlite3`` on the event
loop, :mod:`tether.db.sqliteloop`) or PostgreSQL (asyncpg), plus :class:`StatementCounter`
to measure how many statements a block runs.

URLs accepted by :func:`create_engine`:

- ``sqlite:///path/to/file.db`` (``sqlite+aiosqlite:///…``, ``sqlite+pysqlite:///…`` and
  ``sqlite+tetherloop:///…`` name the same driver); the parent directory is created. Every
  connection gets WAL, ``foreign_keys=ON``, ``busy_timeout=0`` (a busy database is waited
  for asynchronously, up to ``SQLITE_BUSY_TIMEOUT_MS``) and ``synchronous=NORMAL``; a file
  database's WAL is checkpointed by a thread, off the event loop (:mod:`tether.db.walcheckpoint`).
- ``postgresql+asyncpg://…`` (``postgresql://…`` and ``postgres://…`` are rewritten). A
  pooled connection is checked before use only when it sat idle for ``ping_after_idle_s``
  or longer (:func:`ping_after_idle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from tether.db import sqliteloop, walcheckpoint
from tether.errors import InvalidInput, Timeout

SQLITE_BUSY_TIMEOUT_MS = 5000


def normalise_url(url: str | URL) -> URL:
    """Return ``url`` with the async driver tether uses for its dialect.

    Raises :class:`InvalidInput` for anything that is not SQLite or PostgreSQL."""
    parsed = make_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername=f"sqlite+{sqliteloop.DRIVER}")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise InvalidInput(f"unsupported database URL scheme: {parsed.drivername}", field="db_url")


PING_AFTER_IDLE_S = 1.0  # PostgreSQL: a pooled connection idle this long is checked before use


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout_s: float = 10.0,
    echo: bool = False,
    sqlite_busy_wait_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
    ping_after_idle_s: float = PING_AFTER_IDLE_S,
    idle_clock: Callable[[], float] = time.monotonic,
) -> AsyncEngine:
    """Create the async engine for ``url`` (see the module docstring for accepted URLs).

    The pool settings apply to PostgreSQL; ``pool_timeout_s`` bounds how long a caller waits
    for a free pooled connection, and a connection idle for ``ping_after_idle_s`` is checked
    before use (:func:`ping_after_idle`, timed by ``idle_clock``). ``sqlite_busy_wait_s``
    bounds how long one SQLite statement waits for another connection's lock before
    "database is locked"."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(
            parsed, echo=echo, pool_timeout_s=pool_timeout_s, busy_wait_s=sqlite_busy_wait_s
        )
    engine = _create_async_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        # the connection given back last is taken first: the busy few stay warm (no idle
        # check, see ping_after_idle) and the rest stay idle until a burst needs them
        pool_use_lifo=True,
        # a replica may sit behind a connection-killing proxy; recycle well before typical limits
        pool_recycle=1800,
    )
    ping_after_idle(engine.sync_engine, ping_after_idle_s, idle_clock)
    return engine


_USED_AT = "tether_used_at"  # the pool record's info key: when the connection was last used


def ping_after_idle(
    sync_engine: sa.Engine, idle_s: float, now: Callable[[], float] = time.monotonic
) -> None:
    """Check a pooled connection before it is used only when it sat idle for ``idle_s`` or
    longer; replace it when the check fails (a restarted server, a proxy that cut it).

    SQLAlchemy's ``pool_pre_ping`` checks on every checkout, and on asyncpg a check is three
    round trips (``BEGIN``, ``;``, ``ROLLBACK``): a chat turn checks a connection out a dozen
    times, so the checks were most of its database round trips. A connection given back
    moments ago is as alive as the check would find it (HikariCP skips its check within
    500 ms of last use for the same reason). What is given up: a connection that dies
    within ``idle_s`` of its last use fails its next statement instead of being replaced
    first; SQLAlchemy then sees the disconnect and recycles the whole pool. A fresh
    connection is never checked. ``idle_s = 0`` checks every checkout."""
    dialect = sync_engine.dialect

    def used(_dbapi: Any, record: Any) -> None:
        record.info[_USED_AT] = now()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get(_USED_AT)
        if last is not None and now() - last < idle_s:
            return
        try:
            alive = dialect.do_ping(dbapi)
        except Exception as err:
            raise sa.exc.DisconnectionError(f"a pooled connection failed its check: {err}") from err
        if alive is False:  # the dialect said so without raising
            raise sa.exc.DisconnectionError("a pooled connection failed its check")

    sa.event.listen(sync_engine, "connect", used)
    sa.event.listen(sync_engine, "checkin", used)
    sa.event.listen(sync_engine, "checkout", checkout)


def _create_sqlite_engine(
    url: URL, *, echo: bool, pool_timeout_s: float, busy_wait_s: float
) -> AsyncEngine:
    database = url.database
    checkpointer = None
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        checkpointer = walcheckpoint.WalCheckpointer(Path(database).expanduser())
    pooled: dict[str, Any] = {}
    if sqliteloop.SQLiteLoopDialect.get_pool_class(url) is not sa.pool.StaticPool:
        pooled["pool_timeout"] = pool_timeout_s  # an in-memory database's one shared
        # connection (StaticPool) is never waited for: that pool takes no timeout
    engine = _create_async_engine(url, echo=echo, busy_wait_s=busy_wait_s, **pooled)
    sa.event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
    if checkpointer is not None:
        sa.event.listen(engine.sync_engine, "connect", _checkpoint_as_backstop)
    _skip_idle_rollbacks(engine.sync_engine.dialect)
    return SQLiteEngine(
        engine.sync_engine, write_wait_s=SQLITE_WRITE_WAIT_S, checkpointer=checkpointer
    )


def _skip_idle_rollbacks(dialect: sa.Dialect) -> None:
    """No ROLLBACK for a SQLite connection that has no transaction open.

    SQLAlchemy rolls a connection back when a ``connect()`` block ends and again when the
    pool takes it back, also after a commit: two or three per statement group of a chat
    turn, each an event (``StatementCounter`` shows none) and a call into SQLite. The
    sqlite3 module opens a transaction only before a write, and says whether one is open
    (``in_transaction``), so a rollback with none open has nothing to undo."""
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
        try:  # a closed connection raises: roll back as usual
            idle = raw.in_transaction is False
        except Exception:
            idle = False
        if not idle:
            rollback(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


SQLITE_WRITE_WAIT_S = 30.0


class SQLiteConnection(AsyncConnection):
    """An :class:`AsyncConnection` whose ``async with`` exit closes it directly.

    SQLAlchemy's exit runs the close in a task of its own so that a cancellation cannot
    abandon it half-way; a close on :mod:`tether.db.sqliteloop` (a rollback if a
    transaction is open, the pool check-in, which never waits) never suspends, so nothing
    can cut it and the task would only cost a loop turn per ``connect()`` block."""

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        # ``close()`` would run this in a greenlet of its own; nothing in it can suspend
        # (see above), so it runs here directly (issue #12: a greenlet per block).
        sync = self.sync_connection
        if sync is not None:
            sync.close()


class SQLiteEngine(AsyncEngine):
    """An async engine whose write transactions (``begin()``) take turns in asyncio, and
    whose database work is never cut in half by a cancellation.

    SQLite has one writer. Left to its busy handler, many concurrent writers of one process
    fail with "database is locked" once a loaded event loop keeps a transaction open longer
    than the busy timeout, and a read transaction that upgrades to a write fails at once
    when another connection committed meanwhile. Queueing the writers here removes both:
    the database sees one write transaction of this process at a time. Reads
    (``connect()``) still run concurrently (WAL). Re-entrant within a task; the wait is
    bounded (``write_wait_s``) and raises :class:`tether.errors.Timeout`.

    Cancellation (issue #9 §9): with aiosqlite a statement ran in a thread and could not be
    stopped; a cancellation that reached SQLAlchemy mid-statement invalidated the
    connection and raced aiosqlite's close against the statement still running, which
    once left a connection checked out holding SQLite's write lock until restart. Each
    step then ran in a task of its own so it could finish before the cancellation. The
    driver now runs ``sqlite3`` on the loop (:mod:`tether.db.sqliteloop`): a statement,
    commit, rollback or close cannot be suspended half-way, so a cancellation only
    arrives between them (or while a statement backs off from a busy database, before it
    has run) and a cancelled ``begin()`` block rolls back, returns its connection and
    releases the write lock before the caller sees ``CancelledError``."""

    _connection_cls = SQLiteConnection

    def __init__(
        self,
        sync_engine: sa.Engine,
        *,
        write_wait_s: float,
        checkpointer: walcheckpoint.WalCheckpointer | None = None,
    ) -> None:
        super().__init__(sync_engine)
        self.checkpointer = checkpointer  # None: SQLite checkpoints in commits, as by default
        if checkpointer is not None:
            checkpointer.start(owner=self)
        self._write_lock = asyncio.Lock()
        self._write_wait_s = write_wait_s
        self._writer: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"sqlite_writer_{id(self)}", default=False
        )

    async def dispose(self, close: bool = True) -> None:
        """Stop the checkpoint thread (its connection closed first, so the pool's last
        connection checkpoints and removes the WAL as SQLite does), then the pool."""
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)
        await super().dispose(close)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        if self._writer.get():  # nested in this task's own write transaction
            async with self._transaction() as conn:
                yield conn
            return
        try:
            async with asyncio.timeout(self._write_wait_s):
                await self._write_lock.acquire()
        except TimeoutError as exc:
            raise Timeout(
                f"the database stayed busy for {self._write_wait_s:g}s; try again"
            ) from exc
        token = self._writer.set(True)
        try:
            async with self._transaction() as conn:
                yield conn
        finally:
            self._writer.reset(token)
            self._write_lock.release()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """``AsyncEngine.begin()``: roll back on any exception, cancellation included.

        Only the commit may have to wait (for a busy database), so only it is awaited
        (issue #12): the begin (no statement on SQLite: the ``sqlite3`` module opens the
        transaction before the first write), the rollback and the commit's bookkeeping
        run on SQLAlchemy's sync connection directly instead of in a greenlet each."""
        async with self.connect() as conn:
            sync = conn.sync_connection
            assert sync is not None
            trans = sync.begin()
            try:
                yield conn
            except BaseException:
                if trans.is_active:
                    trans.rollback()
                raise
            else:
                if trans.is_active:
                    raw = sync.connection.driver_connection
                    if raw is not None and raw.in_transaction:
                        await _commit(raw)
                    trans.commit()  # nothing left to commit: SQLAlchemy's bookkeeping


async def _commit(raw: Any) -> None:
    """Commit ``raw`` (a ``sqlite3`` connection), waiting for a busy database as a
    statement does; a failure is raised as SQLAlchemy raises it (``sa.exc.OperationalError``
    …), and the block's connection then rolls back as it closes."""
    try:
        await sqliteloop.run(raw.busy_wait_s, sqlite3.Connection.commit, raw)
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(None, None, exc, sqlite3.Error) from exc


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Raw cursor: these run on every new pooled connection and must not show up in counts.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=0")  # never sleep on the loop: see sqliteloop
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _checkpoint_as_backstop(dbapi_connection: Any, _record: Any) -> None:
    # The checkpoint thread (walcheckpoint.py) does the checkpoints, off the event loop; a
    # commit checkpoints only past the backstop, should the thread fall behind.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA wal_autocheckpoint={walcheckpoint.BACKSTOP_PAGES}")
    finally:
        cursor.close()


def dialect_name(engine: AsyncEngine) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return engine.dialect.name


_READER = "_tether_reader"  # the engine's attribute holding its autocommit twin


def reading(engine: AsyncEngine) -> AsyncConnection:
    """A connection for a block that only reads (``async with reading(engine) as conn``).

    On PostgreSQL its statements run without a transaction of their own (autocommit): a
    ``connect()`` block opens one lazily, so a single read was three round trips
    (``BEGIN``, the ``SELECT``, ``ROLLBACK``) and is now one. Nothing a reader sees changes:
    at READ COMMITTED every statement takes its own snapshot either way. A block that
    writes, locks rows (``FOR UPDATE``), takes a transaction-scoped lock or ``SET LOCAL``
    must use ``engine.begin()`` (or ``connect()``): here each statement would commit on its
    own. On SQLite this is ``engine.connect()``."""
    if engine.dialect.name != "postgresql":
        return engine.connect()
    sync = engine.sync_engine
    reader: AsyncEngine | None = getattr(sync, _READER, None)
    if reader is None:  # one per engine: it shares the engine's pool and listeners
        reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        setattr(sync, _READER, reader)
    return reader.connect()


# Statements that are transaction/connection housekeeping rather than work a store asked for.
_NOISE = re.compile(
    r"^\s*(PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET\s|SHOW\s|select pg_catalog\.version)",
    re.IGNORECASE,
)


@dataclass
class Measurement:
    """Statements seen while a :meth:`StatementCounter.measure` block was open.

    ``statements`` are the SQL texts of counted statements (an ``executemany`` is one
    statement, one round trip); ``noise`` holds PRAGMA/BEGIN/SET/… housekeeping."""

    statements: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)

    def add(self, statement: str, noise: bool) -> None:
        (self.noise if noise else self.statements).append(statement)

    def matching(self, pattern: str) -> list[str]:
        """Counted statements whose text matches the regex ``pattern`` (case-insensitive)."""
        rx = re.compile(pattern, re.IGNORECASE)
        return [s for s in self.statements if rx.search(s)]


class StatementCounter:
    """Counts statements executed through an engine.

    Usage::

        counter = StatementCounter(engine)      # attaches immediately
        with counter.measure() as m:
            await store.do_something()
        assert m.count == 2, m.statements
        counter.close()                          # detaches (also: ``with StatementCounter(e):``)

    ``counter.total`` is a :class:`Measurement` of everything since attaching. Counts cover
    every connection of the engine, so concurrent work in other tasks is included."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sync_engine = engine.sync_engine
        self.total = Measurement()
        self._active: list[Measurement] = []
        sa.event.listen(self._sync_engine, "before_cursor_execute", self._on_execute)
        self._attached = True

    def _on_execute(
        self,
        _conn: Any,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        noise = _NOISE.match(statement) is not None  # once, however many blocks are open
        self.total.add(statement, noise)
        for m in self._active:
            m.add(statement, noise)

    @property
    def count(self) -> int:
        """Counted statements since attaching."""
        return self.total.count

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        """Measure the statements run while the block is open (blocks may nest)."""
        m = Measurement()
        self._active.append(m)
        try:
            yield m
        finally:
            self._active.remove(m)

    def close(self) -> None:
        """Detach from the engine; idempotent."""
        if self._attached:
            sa.event.remove(self._sync_engine, "before_cursor_execute", self._on_execute)
            self._attached = False

    def __enter__(self) -> StatementCounter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
