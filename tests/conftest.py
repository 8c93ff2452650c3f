"""Shared fixtures for the whole test suite.

Database fixtures:

- ``pg_dsn`` (session): DSN of a throwaway PostgreSQL cluster (``tests/support/pg.py``), or
  ``TETHER_TEST_PG_DSN`` when set. If no cluster can be started the PostgreSQL tests are
  skipped — unless ``CI=true``, where that is a failure.
- ``db_url`` (function): parametrized ``sqlite`` | ``postgres`` — a fresh database (a file
  in ``tmp_path``, or a ``t_<random>`` PostgreSQL database dropped afterwards). It is *empty*,
  unless the test also uses ``engine``: then it is the engine's (already migrated) database,
  so a test can open a second engine or start a server on the same data. The postgres param
  carries the ``postgres`` mark (``-m "not postgres"`` deselects it).
- ``engine`` (function): ``create_engine(db_url)`` migrated to head; both dialects.
- ``sqlite_engine`` / ``pg_engine`` (function): one dialect only, migrated to head.
- ``pg_db_url`` (function): an empty PostgreSQL database URL (not migrated).

Tests using ``pg_dsn``, ``pg_db_url`` or ``pg_engine`` get the ``postgres`` mark automatically.

Migrated databases are copies of a template migrated once per session (a SQLite file, a
PostgreSQL template database): running the migrations for every test costs far more than a
copy. The engine fixtures still call ``upgrade`` (a no-op check) so the contract holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support import dockerd
from support.pg import PgUnavailable, create_database, database_dsn, drop_database, start_cluster
from tether.db.engine import create_engine
from tether.db.migrate import head_revision, upgrade
from tether.errors import TetherError
from tether.settings import Settings

# The collector as a server runs it (src/tether/gctune.py), with the test process's own heap
# kept out of it. This process holds every imported test module, pytest's reports and the
# session fixtures: ≈ 600 k objects by mid-suite, so one full collection took 0.3–1.9 s
# (measured with a gc callback over the suite), and it fired inside whatever test was
# running — a timing test then measured the test process's collector, not tether. A
# server freezes its start-up objects once; here, before each test, what is alive is
# collected and frozen, so a test's full collections walk only what the test allocated.
# Every FULL_COLLECT_EVERY tests the frozen objects are collected once more (cycles that
# died after being frozen are freed), outside any test.
FULL_COLLECT_EVERY = 200
_tests_since_full_collect = 0


@pytest.fixture(scope="session", autouse=True)
def _server_collector_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    fields = Settings.model_fields
    gen0, gen1 = fields["gc_gen0_threshold"].default, fields["gc_gen1_threshold"].default
    gc.set_threshold(gen0, gen1, *before[2:])
    yield
    gc.set_threshold(*before)


@pytest.fixture(autouse=True)
def _test_process_heap_frozen() -> None:
    global _tests_since_full_collect
    _tests_since_full_collect += 1
    if _tests_since_full_collect >= FULL_COLLECT_EVERY:
        _tests_since_full_collect = 0
        gc.unfreeze()
    gc.collect()
    gc.freeze()


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


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """Address of a Docker engine with the workspace image (``tests/support/dockerd.py``):
    ``TETHER_TEST_DOCKER_HOST`` (``make test`` starts one), else a private engine started
    here. No engine: skipped — unless ``CI=true``, where that is a failure."""
    external = os.environ.get("TETHER_TEST_DOCKER_HOST")
    engine = None
    try:
        if external:
            host = external
        else:
            engine = dockerd.start()
            host = engine.host
        dockerd.ensure_image(host)
    except (dockerd.DockerUnavailable, OSError, TetherError) as exc:
        message = f"no Docker engine for the docker backend tests:\n{exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield host
    finally:
        if engine is not None:
            dockerd.stop(engine)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that needs the PostgreSQL server gets the mark, however it asks for it.
    for item in items:
        if {"pg_dsn", "pg_engine", "pg_db_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


class _Templates:
    """Databases migrated once per session; tests that want a migrated database get a copy."""

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch
        self._sqlite: Path | None = None
        self._pg: dict[str, str] = {}  # admin DSN -> template database name

    async def sqlite_copy(self, dest: Path) -> None:
        if self._sqlite is None:
            path = self._scratch / f"template-{head_revision()}.db"
            await upgrade(_sqlite_url(path))  # disposes its engine: the WAL is checkpointed
            self._sqlite = path
        shutil.copyfile(self._sqlite, dest)

    async def pg_template(self, pg_dsn: str) -> str:
        if pg_dsn not in self._pg:
            name = await create_database(pg_dsn)
            await upgrade(database_dsn(pg_dsn, name))
            self._pg[pg_dsn] = name
        return self._pg[pg_dsn]

    def drop_all(self) -> None:
        # Matters for TETHER_TEST_PG_DSN; a throwaway cluster may already be gone.
        for dsn, name in self._pg.items():
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                asyncio.run(drop_database(dsn, name))


@pytest.fixture(scope="session")
def _db_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    templates = _Templates(tmp_path_factory.mktemp("db-templates"))
    try:
        yield templates
    finally:
        templates.drop_all()


@asynccontextmanager
async def _pg_database(pg_dsn: str, templates: _Templates | None = None) -> AsyncIterator[str]:
    template = await templates.pg_template(pg_dsn) if templates else "template0"
    name = await create_database(pg_dsn, template=template)
    try:
        yield database_dsn(pg_dsn, name)
    finally:
        await drop_database(pg_dsn, name)


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of a fresh database, once per dialect (empty unless ``engine`` is used too)."""
    templates: _Templates | None = None
    if "engine" in request.fixturenames:
        templates = request.getfixturevalue("_db_templates")
    if request.param == "sqlite":
        path = tmp_path / "tether.db"
        if templates:
            await templates.sqlite_copy(path)
        yield _sqlite_url(path)
        return
    async with _pg_database(request.getfixturevalue("pg_dsn"), templates) as url:
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
async def sqlite_engine(tmp_path: Path, _db_templates: _Templates) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite engine (file in ``tmp_path``)."""
    path = tmp_path / "tether.db"
    await _db_templates.sqlite_copy(path)
    async with _migrated_engine(_sqlite_url(path)) as e:
        yield e


@pytest.fixture
async def pg_engine(pg_dsn: str, _db_templates: _Templates) -> AsyncIterator[AsyncEngine]:
    """A migrated PostgreSQL engine on a fresh database."""
    async with _pg_database(pg_dsn, _db_templates) as url, _migrated_engine(url) as e:
        yield e


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    """Tests must never reach a real LLM provider: scripted models only."""
    from tether.testing.models import block_real_model_requests

    with block_real_model_requests():
        yield
