"""SQLite write transactions of one process take turns (``SQLiteEngine``): many concurrent
writers whose transactions stay open across awaits never hit "database is locked", and a
read that upgrades to a write inside ``begin()`` cannot fail on a stale snapshot."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.engine import SQLiteEngine


async def test_concurrent_slow_writers_all_succeed(sqlite_engine: AsyncEngine) -> None:
    assert isinstance(sqlite_engine, SQLiteEngine)
    async with sqlite_engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        await conn.execute(sa.text("INSERT INTO counter VALUES (0)"))

    async def bump() -> None:
        async with sqlite_engine.begin() as conn:
            n = (await conn.execute(sa.text("SELECT n FROM counter"))).scalar_one()
            await asyncio.sleep(0.01)  # a busy event loop between the read and the write
            await conn.execute(sa.text("UPDATE counter SET n = :n"), {"n": n + 1})

    await asyncio.gather(*(bump() for _ in range(40)))
    async with sqlite_engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT n FROM counter"))).scalar_one() == 40


async def test_nested_begin_in_the_same_task_does_not_deadlock(sqlite_engine: AsyncEngine) -> None:
    async with asyncio.timeout(5):
        async with sqlite_engine.begin() as outer:
            await outer.execute(sa.text("SELECT 1"))
            async with sqlite_engine.begin() as inner:
                await inner.execute(sa.text("SELECT 1"))
