"""WAL checkpoints off the event loop (``tether.db.walcheckpoint``, issue #12): a commit
on the engine's connections — which run on the loop's thread — never checkpoints below
the backstop; the checkpoint thread copies the WAL back with a connection of its own, so
the next writer starts the WAL over; the thread ends with the engine."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tether.db import walcheckpoint
from tether.db.engine import SQLiteEngine, create_engine

ROW = "x" * 3000  # about one page per row
ROWS = 1500  # past SQLite's default auto-checkpoint (1,000 pages)


@contextlib.asynccontextmanager
async def _engine(path: Path) -> AsyncIterator[SQLiteEngine]:
    engine = create_engine(f"sqlite:///{path}")
    assert isinstance(engine, SQLiteEngine)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (v TEXT)"))
        yield engine
    finally:
        await engine.dispose()


async def _write(engine: Any, rows: int) -> None:
    """``rows`` commits of about a page each, as a turn's writes come: one at a time."""
    for _ in range(rows):
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": ROW})


def _wal_frames(path: Path) -> int:
    """Frames in the WAL now, from a connection of the test's own (a read, no checkpoint:
    the WAL index header says how many frames it holds)."""
    raw = sqlite3.connect(path)
    try:
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    finally:
        raw.close()
    size = (path.parent / f"{path.name}-wal").stat().st_size
    return (size - 32) // (page_size + 24)  # WAL header 32 bytes, frame header 24


async def test_commits_on_the_loop_never_checkpoint(tmp_path: Path) -> None:
    """Past 1,000 pages SQLite's default checkpoint would run inside a commit, on the event
    loop's thread; here the WAL keeps every frame until the checkpoint thread copies it."""
    path = tmp_path / "db.sqlite"
    async with _engine(path) as engine:
        assert engine.checkpointer is not None
        engine.checkpointer.stop()  # no round of its own during the test
        await _write(engine, ROWS)
        assert _wal_frames(path) >= ROWS  # nothing was checkpointed: the WAL never restarted
        busy, frames, copied = await asyncio.to_thread(engine.checkpointer.checkpoint_once)
        assert (busy, copied) == (0, frames) and frames >= ROWS
        await _write(engine, 1)  # the next writer starts the WAL from its beginning
        _, frames_after, _ = await asyncio.to_thread(engine.checkpointer.checkpoint_once)
        assert frames_after < 10


async def test_the_checkpoint_thread_keeps_the_wal_short(tmp_path: Path) -> None:
    """The thread's rounds copy the WAL while the loop writes on; its rounds are counted."""
    path = tmp_path / "db.sqlite"
    async with _engine(path) as engine:
        checkpointer = engine.checkpointer
        assert checkpointer is not None
        checkpointer.stop()
        fast = walcheckpoint.WalCheckpointer(path, interval_s=0.01)
        fast.start()
        try:
            await _write(engine, 200)
            for _ in range(1000):  # a generous ceiling (10 s): rounds run every 10 ms
                if fast.frames_copied >= 200:
                    break
                await asyncio.sleep(0.01)
        finally:
            await asyncio.to_thread(fast.stop)
        assert fast.frames_copied >= 200 and fast.rounds >= 1


async def test_the_thread_ends_with_the_engine(tmp_path: Path) -> None:
    """Disposing of the engine ends its checkpoint thread and closes its connection, so the
    pool's last connection removes the WAL as SQLite does at the last close."""
    path = tmp_path / "db.sqlite"
    async with _engine(path) as engine:
        checkpointer = engine.checkpointer
        assert checkpointer is not None
        thread = checkpointer._thread
        assert thread is not None and thread.is_alive()
        await _write(engine, 5)
    assert not thread.is_alive()
    assert not (tmp_path / "db.sqlite-wal").exists()
