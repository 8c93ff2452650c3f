"""Issue #9 §9 follow-up: why a stress harness saw "database is locked" after interrupts.

A write transaction of the server spans several event-loop turns (one per statement, then
the commit). A second writer that waits for SQLite's lock *on the event loop's own thread*
stops the loop, so the server's transaction cannot reach its commit: the two wait on each
other until the busy timeout ends, and the foreign write fails although nothing leaked. The
same write from another thread (or process) waits for the commit and succeeds.
``tests/integration/chatd/test_chatd_sqlite_interrupt.py`` is the end-to-end version.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tether.db.engine import create_engine


def _foreign_write(path: Path, busy_wait_s: float) -> None:
    raw = sqlite3.connect(path, timeout=busy_wait_s, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO t VALUES (2)")
        raw.execute("COMMIT")
    finally:
        raw.close()


async def test_a_foreign_write_waits_for_a_transaction_in_flight_unless_it_stops_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        wrote, gate = asyncio.Event(), asyncio.Event()

        async def server_transaction() -> None:
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
                wrote.set()
                await gate.wait()  # the rest of the transaction: later loop turns

        task = asyncio.create_task(server_transaction())
        await wrote.wait()
        # On the loop's thread: the transaction cannot go on, so the busy wait runs out.
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _foreign_write(path, 0.2)
        assert time.monotonic() - started >= 0.2
        # From a thread: it waits while the loop lets the transaction commit, then writes.
        foreign = asyncio.create_task(asyncio.to_thread(_foreign_write, path, 10.0))
        await asyncio.sleep(0.05)
        assert not foreign.done()  # it waits for the lock the transaction holds
        gate.set()
        await task
        async with asyncio.timeout(10):
            await foreign
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT x FROM t ORDER BY x"))).scalars().all()
        assert rows == [1, 2]
    finally:
        await engine.dispose()
