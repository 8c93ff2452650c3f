"""Issue #9 §9: no cancellation leaves a SQLite connection or transaction behind.

A write transaction is cancelled at every point of its life (each event-loop turn from
"waiting for the write lock" to "committing"), once or twice in a row (an interrupt
followed by a shutdown, anyio's repeated cancellation). The moment the cancelled task has
ended, the database must be free: the connection is back in the pool, no transaction is
open, and another connection can write at once (no busy wait). Before the fix a
cancellation mid-statement made SQLAlchemy invalidate the connection and race aiosqlite's
close against the statement still running in its thread — the write lock outlived the
task, and under load the connection was never returned at all. (The driver is now
``sqlite3`` on the event loop, ``tether.db.sqliteloop``; these tests guard it the same way.)
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa

from tether.db.engine import create_engine

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


async def _writer(engine: sa.ext.asyncio.AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        await asyncio.sleep(0)  # work between statements, as stores do
        await conn.execute(sa.text("INSERT INTO t VALUES (2)"))
        await conn.execute(sa.text("SELECT count(*) FROM t"))


def _write_now(path: Path) -> None:
    """Write from another connection without waiting: fails if a lock is held."""
    raw = sqlite3.connect(path, timeout=0)
    try:
        raw.execute("INSERT INTO t VALUES (3)")
        raw.commit()
    finally:
        raw.close()


@pytest.mark.parametrize("second_cancel_after", [None, 0, 1, 3])
async def test_a_cancelled_write_transaction_leaves_nothing_behind(
    tmp_path: Path, second_cancel_after: int | None
) -> None:
    path = tmp_path / "t.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        completed = 0
        for turns in range(40):  # every event-loop turn of the transaction's life
            task = asyncio.create_task(_writer(engine))
            for _ in range(turns):
                await asyncio.sleep(0)
            if task.done():
                completed += 1
                continue
            task.cancel()
            if second_cancel_after is not None:
                for _ in range(second_cancel_after):
                    await asyncio.sleep(0)
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert engine.pool.checkedout() == 0, f"connection kept after cancel at {turns}"  # type: ignore[attr-defined]
            _write_now(path)
        assert completed < 40, "the loop never cancelled a running transaction"
        # and the engine itself still writes (its write lock was released)
        async with asyncio.timeout(2):
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO t VALUES (4)"))
    finally:
        await engine.dispose()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.collect()


async def test_a_statement_is_never_in_flight_when_a_cancellation_arrives(
    tmp_path: Path,
) -> None:
    """A cancellation reaches a task only where it is suspended. With aiosqlite that
    included every statement (it ran in a thread), so the statement in flight had to be
    run to its end before the transaction rolled back. ``sqlite3`` on the loop cannot be
    suspended mid-statement: a task that has started its transaction runs the statement
    and the commit before the cancellation lands, and the cancellation finds it done.
    (The one suspension inside a statement, the backoff from a busy database, comes
    before the statement has run: tests/unit/db/test_sqliteloop.py.)"""
    path = tmp_path / "t.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        started = asyncio.Event()

        async def one() -> None:
            async with engine.begin() as conn:
                started.set()
                await conn.execute(sa.text("INSERT INTO t VALUES (1)"))

        task = asyncio.create_task(one())
        await started.wait()
        task.cancel()
        await task  # done before the cancellation could land: no CancelledError
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        _write_now(path)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT x FROM t ORDER BY x"))).scalars().all()
            assert rows == [1, 3]
    finally:
        await engine.dispose()
