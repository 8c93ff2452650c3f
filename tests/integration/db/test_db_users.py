"""UserStore on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.users import UserStore
from tether.errors import Conflict, InvalidInput, NotFound, Unauthorized
from tether.ids import hash_token, new_id
from tether.testing.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(engine: AsyncEngine, clock: FakeClock) -> UserStore:
    return UserStore(engine, clock)


async def test_create_and_read_users(store: UserStore, clock: FakeClock) -> None:
    assert await store.count_users() == 0
    alice = await store.create_user("alice", "admin")
    clock.advance(1)
    bob = await store.create_user("bob-2")
    assert alice.role == "admin" and bob.role == "member"
    assert alice.created_at == clock.now() - timedelta(seconds=1)
    assert await store.get_user(alice.id) == alice  # times come back tz-aware UTC
    assert await store.get_user_by_name("bob-2") == bob
    assert await store.list_users() == [alice, bob]
    assert await store.count_users() == 2


async def test_missing_users_are_not_found(store: UserStore) -> None:
    with pytest.raises(NotFound):
        await store.get_user(new_id())
    with pytest.raises(NotFound):
        await store.get_user_by_name("nobody")


async def test_duplicate_name_conflicts(store: UserStore) -> None:
    await store.create_user("alice")
    with pytest.raises(Conflict):
        await store.create_user("alice", "admin")
    assert await store.count_users() == 1


@pytest.mark.parametrize("name", ["", "Alice", "1abc", "a_b", "a" * 33, "-a", "a b"])
async def test_invalid_names_are_refused(store: UserStore, name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        await store.create_user(name)
    assert info.value.field == "name"


async def test_valid_name_edges(store: UserStore) -> None:
    assert (await store.create_user("a")).name == "a"
    assert (await store.create_user("a" * 32)).name == "a" * 32


async def test_invalid_role_is_refused(store: UserStore) -> None:
    with pytest.raises(InvalidInput):
        await store.create_user("alice", "root")


async def test_token_authenticates_its_owner(store: UserStore, engine: AsyncEngine) -> None:
    alice = await store.create_user("alice")
    plaintext, token = await store.create_token(alice.id, "laptop")
    assert token.user_id == alice.id and token.expires_at is None
    assert await store.authenticate(plaintext) == alice
    assert await store.list_tokens(alice.id) == [token]
    # only the hash is stored
    async with engine.connect() as conn:
        from sqlalchemy import select

        from tether.db.tables import api_tokens

        stored = (await conn.execute(select(api_tokens.c.token_hash))).scalars().all()
    assert stored == [hash_token(plaintext)]


async def test_unknown_token_is_unauthorized(store: UserStore) -> None:
    alice = await store.create_user("alice")
    plaintext, _ = await store.create_token(alice.id, "laptop")
    with pytest.raises(Unauthorized):
        await store.authenticate(plaintext + "x")
    with pytest.raises(Unauthorized):
        await store.authenticate("")


async def test_expired_token_is_unauthorized(store: UserStore, clock: FakeClock) -> None:
    alice = await store.create_user("alice")
    plaintext, token = await store.create_token(
        alice.id, "ci", expires_at=clock.now() + timedelta(minutes=5)
    )
    assert token.expires_at == clock.now() + timedelta(minutes=5)
    assert await store.authenticate(plaintext) == alice
    clock.advance(299)
    assert await store.authenticate(plaintext) == alice
    clock.advance(1)
    with pytest.raises(Unauthorized):
        await store.authenticate(plaintext)


async def test_deleted_token_no_longer_authenticates(store: UserStore) -> None:
    alice = await store.create_user("alice")
    keep, _ = await store.create_token(alice.id, "keep")
    plaintext, token = await store.create_token(alice.id, "drop")
    await store.delete_token(token.id)
    with pytest.raises(Unauthorized):
        await store.authenticate(plaintext)
    assert await store.authenticate(keep) == alice
    with pytest.raises(NotFound):
        await store.delete_token(token.id)


async def test_token_for_missing_user_is_not_found(store: UserStore) -> None:
    with pytest.raises(NotFound):
        await store.create_token(new_id(), "x")


async def test_token_needs_a_name_and_aware_expiry(store: UserStore, clock: FakeClock) -> None:
    alice = await store.create_user("alice")
    with pytest.raises(InvalidInput):
        await store.create_token(alice.id, "")
    with pytest.raises(InvalidInput):
        await store.create_token(alice.id, "x", expires_at=clock.now().replace(tzinfo=None))
