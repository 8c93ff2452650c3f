"""Alembic migrations produce exactly the schema of ``tether.db.tables`` on both dialects."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from tether.db.engine import StatementCounter, create_engine
from tether.db.migrate import current_revision, head_revision, upgrade
from tether.db.tables import metadata
from tether.errors import Timeout


def _reflect(conn: Connection) -> dict[str, dict[str, object]]:
    insp = sa.inspect(conn)
    out: dict[str, dict[str, object]] = {}
    for table in insp.get_table_names():
        if table == "alembic_version":
            continue
        out[table] = {
            "columns": sorted(c["name"] for c in insp.get_columns(table)),
            "nullable": sorted(c["name"] for c in insp.get_columns(table) if c["nullable"]),
            # PostgreSQL also lists the indexes backing unique constraints; those are below
            "indexes": sorted(
                str(i["name"]) for i in insp.get_indexes(table) if "duplicates_constraint" not in i
            ),
            "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "fks": sorted(
                (tuple(fk["constrained_columns"]), str(fk["referred_table"]))
                for fk in insp.get_foreign_keys(table)
            ),
        }
    return out


def _expected() -> dict[str, dict[str, object]]:
    return {
        t.name: {
            "columns": sorted(c.name for c in t.columns),
            "nullable": sorted(c.name for c in t.columns if c.nullable),
            "indexes": sorted(str(i.name) for i in t.indexes),
            "uniques": sorted(
                tuple(c.name for c in u.columns)
                for u in t.constraints
                if isinstance(u, sa.UniqueConstraint)
            ),
            "fks": sorted(
                (tuple(c.name for c in fk.columns), fk.referred_table.name)
                for fk in t.foreign_key_constraints
            ),
        }
        for t in metadata.sorted_tables
    }


def _autogenerate_diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


async def test_upgrade_creates_the_schema_of_tables_py(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_reflect) == _expected()
            # Alembic's own comparison: nothing left to autogenerate means tables.py and the
            # migrations agree on types, nullability, uniques, indexes and foreign keys.
            assert await conn.run_sync(_autogenerate_diff) == []
    finally:
        await engine.dispose()


async def test_partial_unique_index_on_live_workspace_names(
    engine: sa.ext.asyncio.AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("workspaces"))
    (live,) = [i for i in indexes if i["name"] == "uq_workspaces_owner_name_live"]
    assert live["unique"]
    where = live.get("dialect_options", {})
    assert any("deleted" in str(v) for k, v in where.items() if k.endswith("_where")), live


async def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        with StatementCounter(engine) as counter, counter.measure() as m:
            await upgrade(engine)
        assert not m.matching(r"^\s*(CREATE|ALTER|DROP|INSERT|UPDATE)"), m.statements
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_upgrade_accepts_a_url(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_concurrent_migrators_serialise(pg_db_url: str) -> None:
    engines = [create_engine(pg_db_url) for _ in range(3)]
    try:
        await asyncio.wait_for(asyncio.gather(*(upgrade(e) for e in engines)), timeout=30)
        assert await current_revision(engines[0]) == head_revision()
    finally:
        for e in engines:
            await e.dispose()


async def test_waiting_for_another_migrator_has_a_deadline(pg_db_url: str) -> None:
    holder, waiter = create_engine(pg_db_url), create_engine(pg_db_url)
    try:
        async with holder.begin() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x7E7E_0001})
            with pytest.raises(Timeout):
                await upgrade(waiter, lock_timeout_s=0.2)
        await upgrade(waiter)  # lock released → proceeds
    finally:
        await holder.dispose()
        await waiter.dispose()
