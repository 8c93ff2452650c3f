"""The SQLite driver runs ``sqlite3`` on the event loop (``tether.db.sqliteloop``, issue
#12): no statement leaves the loop's thread, and waiting for another connection's lock
never stops the loop — it backs off asynchronously up to the bound, then fails with the
same "database is locked" as SQLite's busy timeout; a stale snapshot fails at once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from support.sqlitelock import foreign_write_lock
from tether.db.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

# The blocking design (SQLite's busy handler on the loop's thread) stalls the loop for the
# whole time the foreign lock is held (HOLD_S): more than six times this ceiling, which
# leaves room for a shared machine's scheduling gaps (up to ~65 ms seen under load 4).
HOLD_S = 1.0
MAX_STALL_S = 0.15


@contextlib.asynccontextmanager
async def _engine(path: Path, **kwargs: Any) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{path}", **kwargs)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        yield engine
    finally:
        await engine.dispose()


class Ticker:
    """A task that ticks every 5 ms and records the longest gap between two ticks."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._ticking = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    @classmethod
    async def start(cls) -> Ticker:
        """A ticker that is already ticking (its clock runs before the caller goes on)."""
        ticker = cls()
        await ticker._ticking.wait()
        return ticker

    async def _run(self) -> None:
        self._last = time.perf_counter()
        self._ticking.set()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.longest = max(self.longest, now - self._last)
            self._last = now

    async def stop(self) -> float:
        """The longest gap, counting the one still open (a stall just before ``stop``)."""
        longest = max(self.longest, time.perf_counter() - self._last)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return longest


async def _rows(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text("SELECT x FROM t ORDER BY x"))).scalars())


async def test_every_statement_runs_on_the_event_loop_thread(tmp_path: Path) -> None:
    threads: set[int] = set()

    def on_execute(*_args: Any) -> None:
        threads.add(threading.get_ident())

    async with _engine(tmp_path / "t.db") as engine:
        sa.event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
        before = threading.active_count()
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert await _rows(engine) == [1]
        assert threads == {threading.get_ident()}
        assert threading.active_count() == before  # no connection thread was started


async def test_a_write_waits_for_a_foreign_lock_without_stalling_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with _engine(path) as engine:
        with foreign_write_lock(path, hold_s=HOLD_S):
            ticker = await Ticker.start()
            started = time.perf_counter()
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            waited = time.perf_counter() - started
            stalled = await ticker.stop()
        assert waited >= HOLD_S - 0.1, f"the write did not wait for the lock ({waited:.3f}s)"
        assert stalled < MAX_STALL_S, f"the loop stalled for {stalled * 1000:.0f} ms"
        assert await _rows(engine) == [1, 100]


async def test_a_lock_held_past_the_bound_is_database_is_locked_not_a_hang(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    async with _engine(path, sqlite_busy_wait_s=0.3) as engine:
        with foreign_write_lock(path, hold_s=1.5):
            ticker = await Ticker.start()
            started = time.perf_counter()
            with pytest.raises(sa.exc.OperationalError, match="database is locked"):
                async with engine.begin() as conn:
                    await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            failed_after = time.perf_counter() - started
            stalled = await ticker.stop()
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert 0.3 <= failed_after < 1.2, failed_after
        assert stalled < MAX_STALL_S, f"the loop stalled for {stalled * 1000:.0f} ms"
        async with engine.begin() as conn:  # the engine writes again once the lock is free
            await conn.execute(sa.text("INSERT INTO t VALUES (2)"))
        assert await _rows(engine) == [2, 100]


def test_the_default_bound_is_sqlites_busy_timeout_of_earlier_releases() -> None:
    engine = create_engine("sqlite:///unused.db")
    assert engine.dialect.busy_wait_s == SQLITE_BUSY_TIMEOUT_MS / 1000  # type: ignore[attr-defined]


async def test_a_stale_snapshot_fails_at_once_as_sqlite_does(tmp_path: Path) -> None:
    """SQLITE_BUSY_SNAPSHOT: a read transaction whose snapshot a foreign commit made stale
    cannot become a write transaction however long it waits."""
    path = tmp_path / "t.db"
    async with _engine(path) as engine:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("BEGIN")
            await conn.execute(sa.text("SELECT count(*) FROM t"))  # the snapshot
            raw = sqlite3.connect(path)
            raw.execute("INSERT INTO t VALUES (100)")
            raw.commit()
            raw.close()
            started = time.perf_counter()
            with pytest.raises(sa.exc.OperationalError, match="database is locked"):
                await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            assert time.perf_counter() - started < 1.0  # the bound is 5 s
            await conn.rollback()
        assert await _rows(engine) == [100]


async def test_a_write_cancelled_while_waiting_for_a_foreign_lock_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    """Issue #9 §9 on this driver: the only place a task can be suspended inside a
    statement is the backoff from a busy database, before the statement has run."""
    path = tmp_path / "t.db"
    async with _engine(path) as engine:
        with foreign_write_lock(path, hold_s=0.3):
            waiting = asyncio.Event()

            async def write() -> None:
                async with engine.begin() as conn:
                    waiting.set()
                    await conn.execute(sa.text("INSERT INTO t VALUES (1)"))

            task = asyncio.create_task(write())
            await waiting.wait()
            await asyncio.sleep(0.05)  # well into the backoff (the lock is held 0.3 s)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        raw = sqlite3.connect(path, timeout=0)  # nothing of ours holds the lock
        raw.execute("INSERT INTO t VALUES (3)")
        raw.commit()
        raw.close()
        async with asyncio.timeout(2):
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO t VALUES (4)"))
        assert await _rows(engine) == [3, 4, 100]
