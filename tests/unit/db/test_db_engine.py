"""Engine construction, SQLite connection settings and the statement counter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.engine import StatementCounter, create_engine, dialect_name, normalise_url
from tether.errors import InvalidInput


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///x.db", "sqlite+tetherloop"),
        ("sqlite+aiosqlite:///x.db", "sqlite+tetherloop"),  # the driver of earlier releases
        ("sqlite+pysqlite:///x.db", "sqlite+tetherloop"),
        ("sqlite+tetherloop:///x.db", "sqlite+tetherloop"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_urls_are_rewritten_to_the_async_driver(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


def test_other_databases_are_refused() -> None:
    with pytest.raises(InvalidInput):
        normalise_url("mysql://u@h/db")


async def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tether.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert dialect_name(engine) == "sqlite"
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        assert path.exists()
    finally:
        await engine.dispose()


async def _pragmas(engine: AsyncEngine) -> tuple[object, ...]:
    async with engine.connect() as conn:
        return tuple(
            [
                await conn.scalar(sa.text(f"PRAGMA {name}"))
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            ]
        )


async def test_every_sqlite_connection_gets_wal_fk_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        # two connections at once: the settings are per connection, not per file
        results = await asyncio.gather(_pragmas(engine), _pragmas(engine))
        for result in results:
            # synchronous NORMAL == 1; busy_timeout 0: SQLite never sleeps on the event loop,
            # the driver backs off asynchronously (tests/unit/db/test_sqliteloop.py)
            assert result == ("wal", 1, 0, 1)
    finally:
        await engine.dispose()


async def test_sqlite_enforces_foreign_keys(sqlite_engine: AsyncEngine) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        async with sqlite_engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO api_tokens (id, user_id, token_hash, name, created_at)"
                    " VALUES ('a', 'nobody', 'h', 'n', '2026-01-01')"
                )
            )


async def test_statement_counter_counts_work_not_housekeeping(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with StatementCounter(engine) as counter:
            with counter.measure() as outer:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
                    await conn.execute(sa.text("PRAGMA user_version"))
                    with counter.measure() as inner:
                        await conn.execute(
                            sa.text("INSERT INTO t (x) VALUES (:x)"), [{"x": 1}, {"x": 2}]
                        )
                        await conn.execute(sa.text("SELECT x FROM t"))
            assert inner.count == 2  # an executemany is one statement
            assert inner.matching(r"^insert") == ["INSERT INTO t (x) VALUES (?)"]
            assert outer.count == 3
            assert "PRAGMA user_version" in outer.noise
            assert counter.count >= 3
        # detached: nothing more is counted
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        assert outer.count == 3
        total = counter.count
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 2"))
        assert counter.count == total
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
async def test_an_in_memory_database_is_one_shared_connection_that_works(url: str) -> None:
    """An in-memory SQLite database lives in one connection, shared by every caller (a
    second connection would be a second, empty database): creating its engine must not
    pass the pool a wait bound that pool does not take (it raised TypeError)."""
    engine = create_engine(url, pool_timeout_s=3.0)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (1), (2)"))
        async with engine.connect() as conn:  # the same database, seen from another block
            assert await conn.scalar(sa.text("SELECT sum(x) FROM t")) == 3
    finally:
        await engine.dispose()
