"""The engine and statement counter against both dialects."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.engine import StatementCounter, create_engine, dialect_name


async def test_statement_counter_on_both_dialects(engine: AsyncEngine) -> None:
    counter = StatementCounter(engine)
    try:
        with counter.measure() as m:
            async with engine.begin() as conn:
                await conn.execute(sa.text("SELECT count(*) FROM users"))
        assert m.statements == ["SELECT count(*) FROM users"], (m.statements, m.noise)
    finally:
        counter.close()


async def test_postgres_urls_get_asyncpg(pg_db_url: str) -> None:
    plain = pg_db_url.replace("postgresql+asyncpg://", "postgresql://")
    engine = create_engine(plain)
    try:
        assert dialect_name(engine) == "postgresql"
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        await engine.dispose()
