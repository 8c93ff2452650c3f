"""The token → user cache (api/tokencache.py) on a real server: a cached token answers
without a query, and every way a token stops authenticating still refuses the very next
request — revoked, its user disabled or deleted, an admin demoted, the token expired (an
injected clock) — on the replica that made the change. Lost events forget the cache; a
lookup racing an event is not kept; the cache is bounded. Across PostgreSQL replicas the
cache is off unless opted in (``auth_cache_across_replicas``); opted in, an identity event
from one replica empties the other's entries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from support.server import RunningServer, fast_settings, running_server
from tether.api.revocation import publish_revoked
from tether.api.tokencache import TokenCache
from tether.channels import IDENTITY
from tether.db.engine import create_engine
from tether.db.migrate import upgrade
from tether.db.pubsub import RECONNECTED, InProcessBus
from tether.db.tables import users as users_table
from tether.db.users import ApiToken, UserStore
from tether.domain.user import User
from tether.errors import Unauthorized
from tether.testing.clock import FakeClock

pytestmark = pytest.mark.integration

TTL_S = 5.0
EVENT_DEADLINE_S = 5.0


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def srv(tmp_path: Any, clock: FakeClock) -> AsyncIterator[RunningServer]:
    settings = fast_settings(tmp_path, run_chatd=False, auth_cache_ttl_s=TTL_S)
    async with running_server(settings, clock=clock) as server:
        yield server


def _cache(srv: RunningServer) -> TokenCache:
    cache = srv.graph.token_cache
    assert cache is not None and cache.listening
    return cache


def _client(srv: RunningServer, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def _user(srv: RunningServer, name: str, role: str = "member") -> tuple[str, str]:
    r = await srv.client.post("/api/v1/users", json={"name": name, "role": role})
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["user"]["id"]


async def _warm(srv: RunningServer, client: httpx.AsyncClient) -> None:
    """Two requests: the second is served from the cache (the hit count proves it)."""
    cache = _cache(srv)
    assert (await client.get("/api/v1/users/me")).status_code == 200
    hits = cache.hits
    assert (await client.get("/api/v1/users/me")).status_code == 200
    assert cache.hits == hits + 1


async def test_a_cached_token_costs_no_query(srv: RunningServer) -> None:
    token, _ = await _user(srv, "alice")
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async with _client(srv, token) as alice:
        await _warm(srv, alice)
        sa.event.listen(srv.graph.engine.sync_engine, "before_cursor_execute", record)
        try:
            assert (await alice.get("/api/v1/users/me")).status_code == 200
        finally:
            sa.event.remove(srv.graph.engine.sync_engine, "before_cursor_execute", record)
    assert not [s for s in statements if "api_tokens" in s]


async def test_revoked_token_is_refused_on_the_very_next_request(srv: RunningServer) -> None:
    token, _ = await _user(srv, "alice")
    async with _client(srv, token) as alice:
        await _warm(srv, alice)
        tokens = (await alice.get("/api/v1/users/me/tokens")).json()
        r = await srv.client.delete(f"/api/v1/users/alice/tokens/{tokens[0]['id']}")
        assert r.status_code == 204
        assert (await alice.get("/api/v1/users/me")).status_code == 401


async def test_disabled_user_is_refused_on_the_very_next_request(srv: RunningServer) -> None:
    token, _ = await _user(srv, "alice")
    async with _client(srv, token) as alice:
        await _warm(srv, alice)
        assert (await srv.client.post("/api/v1/users/alice/disable")).status_code == 200
        assert (await alice.get("/api/v1/users/me")).status_code == 401


async def test_deleted_user_is_refused_on_the_very_next_request(srv: RunningServer) -> None:
    token, _ = await _user(srv, "alice")
    async with _client(srv, token) as alice:
        await _warm(srv, alice)
        r = await srv.client.delete("/api/v1/users/alice", params={"data": "keep"})
        assert r.status_code == 200, r.text
        assert (await alice.get("/api/v1/users/me")).status_code == 401


async def test_demoted_admin_is_refused_on_the_very_next_request(srv: RunningServer) -> None:
    """There is no demotion endpoint yet: the role is changed in the database and the
    identity event published, as any role change must; the cached admin is gone at once."""
    token, user_id = await _user(srv, "root2", role="admin")
    async with _client(srv, token) as root2:
        await _warm(srv, root2)
        assert (await root2.get("/api/v1/users")).status_code == 200  # an admin route
        async with srv.graph.engine.begin() as conn:
            await conn.execute(
                users_table.update()
                .where(users_table.c.id == uuid.UUID(user_id))
                .values(role="member")
            )
        await publish_revoked(srv.graph.bus, user_id=uuid.UUID(user_id))
        await asyncio.sleep(0)  # the request that changed it would respond after this
        assert (await root2.get("/api/v1/users")).status_code == 403


async def test_a_change_without_an_event_is_trusted_at_most_the_ttl(
    srv: RunningServer, clock: FakeClock
) -> None:
    """An event lost without trace: the role changed in the database, nobody told the
    cache. The entry answers until it is ``auth_cache_ttl_s`` old, then the database does."""
    token, user_id = await _user(srv, "root2", role="admin")
    async with _client(srv, token) as root2:
        await _warm(srv, root2)
        async with srv.graph.engine.begin() as conn:
            await conn.execute(
                users_table.update()
                .where(users_table.c.id == uuid.UUID(user_id))
                .values(role="member")
            )
        clock.advance(TTL_S - 0.5)
        assert (await root2.get("/api/v1/users")).status_code == 200  # within the bound
        clock.advance(0.5)
        assert (await root2.get("/api/v1/users")).status_code == 403


async def test_expired_token_is_refused_at_its_expiry(srv: RunningServer, clock: FakeClock) -> None:
    token, _ = await _user(srv, "alice")
    async with _client(srv, token) as alice:
        r = await alice.post("/api/v1/users/me/tokens", json={"name": "short", "expires_in_s": 3})
        short = r.json()["secret"]
    async with _client(srv, short) as alice:
        await _warm(srv, alice)
        clock.advance(2.9)
        assert (await alice.get("/api/v1/users/me")).status_code == 200  # cached, valid
        clock.advance(0.1)
        r = await alice.get("/api/v1/users/me")
        assert r.status_code == 401 and "expired" in r.text


async def test_refusals_are_not_cached(srv: RunningServer) -> None:
    cache = _cache(srv)
    async with _client(srv, "tt_not-a-token") as nobody:
        for _ in range(3):
            assert (await nobody.get("/api/v1/users/me")).status_code == 401
    assert len(cache) == 0 and cache.misses == 3 and cache.hits == 0


# --- the cache alone, over a real store --------------------------------------------------


@pytest.fixture
async def store(tmp_path: Any, clock: FakeClock) -> AsyncIterator[UserStore]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await upgrade(engine)
    try:
        yield UserStore(engine, clock)
    finally:
        await engine.dispose()


async def _listening(cache: TokenCache) -> asyncio.Task[None]:
    task = asyncio.create_task(cache.run())
    async with asyncio.timeout(EVENT_DEADLINE_S):
        while not cache.listening:
            cache.changed.clear()
            await cache.changed.wait()
    return task


async def _applied(cache: TokenCache, events: int) -> None:
    async with asyncio.timeout(EVENT_DEADLINE_S):
        while cache.events < events:
            cache.changed.clear()
            await cache.changed.wait()


async def test_a_lost_event_forgets_every_entry(store: UserStore, clock: FakeClock) -> None:
    """A bus reconnect (events may have been missed) empties the cache, like the history
    cache's ``forget(None)``."""
    bus = InProcessBus()
    cache = TokenCache(store, bus, clock, ttl_s=TTL_S, max_entries=100)
    task = await _listening(cache)
    try:
        for name in ("alice", "bob"):
            user = await store.create_user(name)
            secret, _ = await store.create_token(user.id, "t")
            await cache.authenticate(secret)
        assert len(cache) == 2
        await bus.publish(IDENTITY, RECONNECTED)
        await _applied(cache, 1)
        assert len(cache) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not cache.listening


async def test_events_dropped_by_a_full_queue_forget_every_entry(
    store: UserStore, clock: FakeClock
) -> None:
    """The cache's subscriber queue overflowed (events lost in this process): whatever
    the surviving event names, every entry goes."""
    bus = InProcessBus(queue_size=1)
    cache = TokenCache(store, bus, clock, ttl_s=TTL_S, max_entries=100)
    task = await _listening(cache)
    try:
        for name in ("alice", "bob"):
            user = await store.create_user(name)
            secret, _ = await store.create_token(user.id, "t")
            await cache.authenticate(secret)
        assert len(cache) == 2
        for _ in range(3):  # no yield in between: the queue of one keeps the last
            await bus.publish(IDENTITY, {"user_id": str(uuid.uuid4())})
        await _applied(cache, 1)
        assert len(cache) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_cache_is_bounded(store: UserStore, clock: FakeClock) -> None:
    cache = TokenCache(store, InProcessBus(), clock, ttl_s=TTL_S, max_entries=3)
    task = await _listening(cache)
    try:
        user = await store.create_user("alice")
        secrets = [(await store.create_token(user.id, f"t{i}"))[0] for i in range(5)]
        for secret in secrets:
            await cache.authenticate(secret)
        assert len(cache) == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class _RacingStore(UserStore):
    """A real store whose lookup is overtaken by a revocation: the event is applied while
    the database read is in flight (after the row was read)."""

    cache: TokenCache | None = None

    async def authenticate_token(self, token: str) -> tuple[User, ApiToken]:
        user, api_token = await super().authenticate_token(token)
        assert self.cache is not None
        self.cache.apply({"user_id": str(user.id)})
        return user, api_token


async def test_a_lookup_overtaken_by_an_event_is_not_kept(tmp_path: Any, clock: FakeClock) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await upgrade(engine)
    store = _RacingStore(engine, clock)
    cache = TokenCache(store, InProcessBus(), clock, ttl_s=TTL_S, max_entries=100)
    store.cache = cache
    task = await _listening(cache)
    try:
        user = await store.create_user("alice")
        secret, _ = await store.create_token(user.id, "t")
        await cache.authenticate(secret)  # answers (the read was valid) but is not kept
        assert len(cache) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()


async def test_without_its_listener_the_cache_keeps_nothing(
    store: UserStore, clock: FakeClock
) -> None:
    cache = TokenCache(store, InProcessBus(), clock, ttl_s=TTL_S, max_entries=100)
    user = await store.create_user("alice")
    secret, _ = await store.create_token(user.id, "t")
    await cache.authenticate(secret)
    assert len(cache) == 0 and cache.hits == 0
    await store.delete_token((await store.list_tokens(user.id))[0].id)
    with pytest.raises(Unauthorized):
        await cache.authenticate(secret)
