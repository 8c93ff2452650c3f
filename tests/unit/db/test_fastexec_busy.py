"""A fast statement (db/fastexec.py) meets a locked SQLite database as SQLAlchemy's path
does (db/sqliteloop.py): it waits without stalling the loop and runs once the lock is
free; past the bound it fails with SQLAlchemy's ``OperationalError`` "database is locked"
and leaves no connection checked out; cancelled while it waits, it leaves nothing behind.
Each test checks the statement really took the fast path (no execution context)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from support.sqlitelock import foreign_write_lock
from tether.db.engine import create_engine
from tether.db.fastexec import FastStatement

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

_T = sa.table("t", sa.column("x", sa.Integer))
INSERT = FastStatement(sa.insert(_T).values(x=sa.bindparam("p_x", type_=sa.Integer)))
# A loop stalled by a blocking wait would stall for the whole hold (1 s and more).
MAX_STALL_S = 0.15


@contextlib.asynccontextmanager
async def _engine(path: Path, **kwargs: Any) -> AsyncIterator[tuple[AsyncEngine, list[Any]]]:
    engine = create_engine(f"sqlite:///{path}", **kwargs)
    contexts: list[Any] = []

    def on_execute(_c: Any, _cur: Any, _st: str, _p: Any, context: Any, _many: bool) -> None:
        contexts.append(context)

    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        sa.event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
        yield engine, contexts
    finally:
        await engine.dispose()


async def _longest_gap_while(coro: Any) -> tuple[float, Any]:
    """Run ``coro`` while a 5 ms ticker measures the loop's longest stall."""
    longest, last = 0.0, time.perf_counter()
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal longest, last
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        result = await coro
    finally:
        done.set()
        await ticker
    return max(longest, time.perf_counter() - last), result


async def _rows(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text("SELECT x FROM t ORDER BY x"))).scalars())


async def _insert(engine: AsyncEngine, x: int) -> None:
    async with engine.begin() as conn:
        await INSERT.many(conn, [{"p_x": x}])


async def test_a_fast_write_waits_for_a_foreign_lock_then_runs(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with _engine(path) as (engine, contexts):
        with foreign_write_lock(path, hold_s=0.5):
            started = time.perf_counter()
            stalled, _ = await _longest_gap_while(_insert(engine, 1))
            waited = time.perf_counter() - started
        assert waited >= 0.4, f"the write did not wait for the lock ({waited:.3f}s)"
        assert stalled < MAX_STALL_S, f"the loop stalled for {stalled * 1000:.0f} ms"
        assert contexts == [None]  # the fast path
        assert await _rows(engine) == [1, 100]


async def test_a_lock_held_past_the_bound_is_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with _engine(path, sqlite_busy_wait_s=0.3) as (engine, contexts):
        with foreign_write_lock(path, hold_s=1.5):
            started = time.perf_counter()
            with pytest.raises(sa.exc.OperationalError, match="database is locked"):
                await _insert(engine, 1)
            failed_after = time.perf_counter() - started
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert 0.3 <= failed_after < 1.2, failed_after
        assert contexts == [None]
        await _insert(engine, 2)  # the engine writes again once the lock is free
        assert await _rows(engine) == [2, 100]


async def test_a_fast_write_cancelled_while_waiting_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with _engine(path) as (engine, contexts):
        with foreign_write_lock(path, hold_s=0.3):
            issued = asyncio.Event()
            sa.event.listen(engine.sync_engine, "before_cursor_execute", lambda *_: issued.set())
            task = asyncio.create_task(_insert(engine, 1))
            await issued.wait()  # the task ran up to its first await: backing off from the lock
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await _insert(engine, 2)  # no lock survived the cancelled task
        assert contexts == [None, None]
        assert await _rows(engine) == [2, 100]
