"""The token cache across PostgreSQL replicas (api/tokencache.py). By default it is off on
PostgreSQL, so a token revoked through one replica gets 401 on the other on the very next
request (test_pg_revocation_replicas.py pins that). Opted in
(``auth_cache_across_replicas``), the identity event travels over LISTEN/NOTIFY and empties
the other replica's entries: once it has arrived, the revoked token, the disabled user and
the demoted admin are refused there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.server import RunningServer, fast_settings, running_server
from tether.api.revocation import publish_revoked
from tether.api.tokencache import TokenCache
from tether.db.tables import users as users_table

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

EVENT_DEADLINE_S = 5.0


@asynccontextmanager
async def _replicas(
    tmp_path: Path, pg_db_url: str, **overrides: Any
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    shared = {
        "db_url": pg_db_url,
        "cli_config": tmp_path / "cli.json",
        "server_key_file": tmp_path / "server.key",
        "run_chatd": False,
        **overrides,
    }
    async with (
        running_server(fast_settings(tmp_path / "a", **shared)) as a,
        running_server(fast_settings(tmp_path / "b", **shared)) as b,
    ):
        yield a, b


def _cache(srv: RunningServer) -> TokenCache:
    cache = srv.graph.token_cache
    assert cache is not None and cache.listening
    return cache


async def _warm(srv: RunningServer, client: httpx.AsyncClient) -> None:
    cache = _cache(srv)
    assert (await client.get("/api/v1/users/me")).status_code == 200
    hits = cache.hits
    assert (await client.get("/api/v1/users/me")).status_code == 200
    assert cache.hits == hits + 1


async def _arrived(cache: TokenCache, events: int) -> None:
    """The identity event reached the replica (a NOTIFY takes a moment)."""
    async with asyncio.timeout(EVENT_DEADLINE_S):
        while cache.events < events:
            cache.changed.clear()
            await cache.changed.wait()


async def test_the_cache_is_off_on_postgresql_by_default(tmp_path, pg_db_url):
    async with _replicas(tmp_path, pg_db_url) as (a, b):
        assert a.graph.token_cache is None and b.graph.token_cache is None


async def test_opted_in_a_revocation_on_one_replica_empties_the_other(tmp_path, pg_db_url):
    async with _replicas(tmp_path, pg_db_url, auth_cache_across_replicas=True) as (a, b):
        r = await a.client.post("/api/v1/users", json={"name": "alice"})
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        r = await a.client.post("/api/v1/users", json={"name": "carol"})
        carol_headers = {"Authorization": f"Bearer {r.json()['token']}"}
        r = await a.client.post("/api/v1/users", json={"name": "root2", "role": "admin"})
        root2_id = r.json()["user"]["id"]
        root2_headers = {"Authorization": f"Bearer {r.json()['token']}"}
        cache = _cache(b)
        async with (
            httpx.AsyncClient(base_url=b.url, headers=headers, timeout=30) as alice_b,
            httpx.AsyncClient(base_url=b.url, headers=carol_headers, timeout=30) as carol_b,
            httpx.AsyncClient(base_url=b.url, headers=root2_headers, timeout=30) as root2_b,
        ):
            for client in (alice_b, carol_b, root2_b):
                await _warm(b, client)
            tokens = (await alice_b.get("/api/v1/users/me/tokens")).json()

            seen = cache.events
            r = await a.client.delete(f"/api/v1/users/alice/tokens/{tokens[0]['id']}")
            assert r.status_code == 204
            await _arrived(cache, seen + 1)
            assert (await alice_b.get("/api/v1/users/me")).status_code == 401

            seen = cache.events
            assert (await a.client.post("/api/v1/users/carol/disable")).status_code == 200
            await _arrived(cache, seen + 1)
            assert (await carol_b.get("/api/v1/users/me")).status_code == 401

            assert (await root2_b.get("/api/v1/users")).status_code == 200
            seen = cache.events
            async with a.graph.engine.begin() as conn:  # no demotion endpoint yet
                await conn.execute(
                    users_table.update()
                    .where(users_table.c.id == uuid.UUID(root2_id))
                    .values(role="member")
                )
            await publish_revoked(a.graph.bus, user_id=uuid.UUID(root2_id))
            await _arrived(cache, seen + 1)
            assert (await root2_b.get("/api/v1/users")).status_code == 403
