"""PostgreSQL's pooled connections are checked before use only after sitting idle
(``ping_after_idle`` in ``src/tether/db/engine.py``): a check is three round trips on
asyncpg, and checking every checkout made them most of a chat turn's database traffic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.engine import StatementCounter, create_engine, reading


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def pooled(pg_db_url: str) -> AsyncIterator[tuple[AsyncEngine, Clock, list[Any]]]:
    """An engine whose idle bound is 5 s on a clock the test moves, with its checks
    counted (the dialect's own ping, as the pool runs it)."""
    clock = Clock()
    engine = create_engine(pg_db_url, ping_after_idle_s=5.0, idle_clock=clock)
    pings: list[Any] = []
    dialect = engine.sync_engine.dialect
    real = dialect.do_ping

    def counted(dbapi: Any) -> bool:
        pings.append(dbapi)
        return real(dbapi)

    dialect.do_ping = counted  # type: ignore[method-assign]
    try:
        yield engine, clock, pings
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


async def test_a_connection_used_moments_ago_is_not_checked_again(
    pooled: tuple[AsyncEngine, Clock, list[Any]],
) -> None:
    engine, clock, pings = pooled
    first = await _backend_pid(engine)  # a fresh connection: never checked
    for _ in range(10):
        assert await _backend_pid(engine) == first  # the same pooled connection
    assert pings == []  # with pool_pre_ping, ten checks of three round trips each
    clock.t += 5.0
    assert await _backend_pid(engine) == first
    assert len(pings) == 1  # idle for the bound: checked once, found alive


async def test_a_connection_that_died_while_idle_is_replaced_before_use(
    pooled: tuple[AsyncEngine, Clock, list[Any]], pg_db_url: str
) -> None:
    """A server restart or a proxy cutting idle connections: the caller never sees it."""
    engine, clock, pings = pooled
    dead = await _backend_pid(engine)
    admin = create_engine(pg_db_url)
    try:
        async with admin.connect() as conn:
            assert await conn.scalar(sa.text("SELECT pg_terminate_backend(:p)"), {"p": dead})
    finally:
        await admin.dispose()
    clock.t += 6.0
    assert await _backend_pid(engine) != dead  # checked, found dead, replaced: no error
    assert len(pings) == 1


async def test_a_read_block_runs_each_statement_on_its_own(pg_db_url: str) -> None:
    """``reading`` (PostgreSQL): no transaction around the block (no ``BEGIN`` and
    ``ROLLBACK`` round trips), so each statement is a transaction of its own; a
    ``connect()`` block still runs in one. The engine's listeners see the reader's
    statements (the warm-turn statement counts rely on it)."""
    engine = create_engine(pg_db_url)
    xact = sa.text("SELECT pg_current_xact_id()::text")
    try:
        with StatementCounter(engine) as counter:
            async with reading(engine) as conn:
                first, second = await conn.scalar(xact), await conn.scalar(xact)
            assert first != second
            async with engine.connect() as conn:
                first, second = await conn.scalar(xact), await conn.scalar(xact)
            assert first == second
        assert len(counter.total.statements) == 4
        async with engine.connect() as conn:  # the reader left no autocommit behind
            assert await conn.scalar(xact) == await conn.scalar(xact)
    finally:
        await engine.dispose()


async def test_a_read_block_on_sqlite_is_a_plain_connection(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        async with reading(engine) as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
        assert getattr(engine.sync_engine, "_tether_reader", None) is None
    finally:
        await engine.dispose()
