"""Shared fixtures for the whole test suite.

Database fixtures:

- ``pg_dsn`` (session): DSN of a throwaway PostgreSQL cluster (``tests/support/pg.py``), or
  ``TETHER_TEST_PG_DSN`` when set. If no cluster can be started the PostgreSQL tests are
  skipped — unless ``CI=true``, where that is a failure.
- ``db_url`` (function): parametrized ``sqlite`` | ``postgres`` — an *empty* database (a file
  in ``tmp_path``, or a fresh ``t_<random>`` PostgreSQL database dropped afterwards). The
  postgres param carries the ``postgres`` mark (``-m "not postgres"`` deselects it).
- ``engine`` (function): ``create_engine(db_url)`` migrated to head; both dialects.
- ``sqlite_engine`` / ``pg_engine`` (function): one dialect only, migrated to head.
- ``pg_db_url`` (function): an empty PostgreSQL database URL (not migrated).

Tests using ``pg_dsn``, ``pg_db_url`` or ``pg_engine`` get the ``postgres`` mark automatically.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.pg import PgUnavailable, create_database, database_dsn, drop_database, start_cluster
from tether.db.engine import create_engine
from tether.db.migrate import upgrade


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """Admin DSN (``postgresql://…``) of the test PostgreSQL server."""
    external = os.environ.get("TETHER_TEST_PG_DSN")
    if external:
        yield external
        return
    try:
        cluster = start_cluster()
    except (PgUnavailable, OSError, PermissionError) as exc:
        message = f"cannot start a throwaway PostgreSQL cluster:\n{exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield cluster.dsn
    finally:
        cluster.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that needs the PostgreSQL server gets the mark, however it asks for it.
    for item in items:
        if {"pg_dsn", "pg_engine", "pg_db_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@asynccontextmanager
async def _pg_database(pg_dsn: str) -> AsyncIterator[str]:
    name = await create_database(pg_dsn)
    try:
        yield database_dsn(pg_dsn, name)
    finally:
        await drop_database(pg_dsn, name)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of an empty database, once per dialect."""
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
        return
    async with _pg_database(request.getfixturevalue("pg_dsn")) as url:
        yield url


@asynccontextmanager
async def _migrated_engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_db_url(pg_dsn: str) -> AsyncIterator[str]:
    """URL of an empty PostgreSQL database (not migrated), dropped afterwards."""
    async with _pg_database(pg_dsn) as url:
        yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine, once per dialect (SQLite and PostgreSQL)."""
    async with _migrated_engine(db_url) as e:
        yield e


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite engine (file in ``tmp_path``)."""
    async with _migrated_engine(_sqlite_url(tmp_path)) as e:
        yield e


@pytest.fixture
async def pg_engine(pg_dsn: str) -> AsyncIterator[AsyncEngine]:
    """A migrated PostgreSQL engine on a fresh database."""
    async with _pg_database(pg_dsn) as url:
        async with _migrated_engine(url) as e:
            yield e
