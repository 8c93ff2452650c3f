"""UserStore on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
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


async def test_token_authenticates_its_owner(
    store: UserStore, engine: AsyncEngine, clock: FakeClock
) -> None:
    alice = await store.create_user("alice")
    plaintext, token = await store.create_token(alice.id, "laptop")
    assert token.user_id == alice.id and token.expires_at is None
    assert await store.authenticate(plaintext) == alice
    assert await store.list_tokens(alice.id) == [replace(token, last_used_at=clock.now())]
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


async def test_last_used_is_coarse_one_write_per_granularity(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    """``last_used_at`` must not cost a write per request: 50 authentications within the
    granularity write once; the next window writes once more."""
    store = UserStore(engine, clock, last_used_granularity_s=60)
    alice = await store.create_user("alice")
    plaintext, token = await store.create_token(alice.id, "cli")
    assert (await store.list_tokens(alice.id))[0].last_used_at is None
    updates: list[str] = []

    def count(_conn: object, _cur: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        first_use = clock.now()
        for _ in range(50):
            await store.authenticate(plaintext)
            clock.advance(1)  # 50 s in all: still inside one window
        assert len(updates) == 1
        assert (await store.list_tokens(alice.id))[0].last_used_at == first_use
        clock.advance(10)
        await store.authenticate(plaintext)
        assert len(updates) == 2
        assert (await store.list_tokens(alice.id))[0].last_used_at == clock.now()
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert token.last_used_at is None


async def test_disabled_and_deleted_users_do_not_authenticate(store: UserStore) -> None:
    alice = await store.create_user("alice")
    plaintext, token = await store.create_token(alice.id, "cli")
    await store.set_disabled(alice.id, True)
    with pytest.raises(Unauthorized):
        await store.authenticate(plaintext)
    assert await store.token_valid(token.id) is False
    await store.set_disabled(alice.id, False)
    assert (await store.authenticate(plaintext)).id == alice.id
    await store.mark_deleted(alice.id)
    with pytest.raises(Unauthorized):
        await store.authenticate(plaintext)
    assert await store.list_tokens(alice.id) == []
    assert await store.list_users() == []
    with pytest.raises(NotFound):
        await store.get_user_by_name("alice")
    assert (await store.get_user(alice.id)).disabled  # builds still name their owner
    with pytest.raises(NotFound):
        await store.create_token(alice.id, "again")


async def test_a_token_is_revoked_only_under_its_owner(store: UserStore) -> None:
    alice, bob = await store.create_user("alice"), await store.create_user("bob")
    plaintext, token = await store.create_token(alice.id, "cli")
    with pytest.raises(NotFound):
        await store.delete_token(token.id, user_id=bob.id)
    assert (await store.authenticate(plaintext)).id == alice.id
    await store.delete_token(token.id, user_id=alice.id)
    with pytest.raises(Unauthorized):
        await store.authenticate(plaintext)
