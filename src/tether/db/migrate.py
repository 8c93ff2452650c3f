"""Run Alembic migrations programmatically — the only way tether's schema changes.

:func:`upgrade` is called at server start and by test fixtures. On PostgreSQL it holds a
transaction-scoped advisory lock while migrating, so replicas starting together migrate one
after the other (the second finds the schema at head and does nothing).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.engine import create_engine
from tether.errors import Timeout

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# pg_advisory_xact_lock key: any fixed 64-bit number unique to tether's migrator.
_MIGRATION_LOCK_KEY = 0x7E7E_0001


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at tether's migrations, optionally bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision in the migrations directory."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


async def upgrade(
    engine_or_url: AsyncEngine | str, revision: str = "head", *, lock_timeout_s: float = 60.0
) -> None:
    """Bring the database to ``revision`` (default: head). Running it again is a no-op.

    Given a URL, a temporary engine is created and disposed. On PostgreSQL, waiting for another
    migrator longer than ``lock_timeout_s`` raises :class:`tether.errors.Timeout`."""
    if isinstance(engine_or_url, str):
        engine = create_engine(engine_or_url)
        try:
            await upgrade(engine, revision, lock_timeout_s=lock_timeout_s)
        finally:
            await engine.dispose()
        return
    engine = engine_or_url
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # SET LOCAL and the xact lock both end with this transaction.
            await conn.execute(sa.text(f"SET LOCAL lock_timeout = {int(lock_timeout_s * 1000)}"))
            try:
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                    raise Timeout("timed out waiting for another migrator") from exc
                raise
        await conn.run_sync(_upgrade_sync, revision)
        await conn.commit()


def _upgrade_sync(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
