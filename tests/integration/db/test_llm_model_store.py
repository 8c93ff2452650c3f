"""ModelStore (admin-managed models) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.llm_models import ModelStore
from tether.db.users import UserStore
from tether.errors import Conflict, NotFound
from tether.testing.clock import FakeClock


async def test_add_read_replace_remove(engine: AsyncEngine) -> None:
    clock = FakeClock()
    admin = await UserStore(engine, clock).create_user("root", "admin")
    store = ModelStore(engine, clock)
    assert await store.list() == [] and await store.get("team") is None

    config = {"provider": "openai-compatible", "model": "m1", "base_url": "http://h/v1"}
    added = await store.add("team", config, user_id=admin.id)
    await store.add("alpha", {"provider": "scripted", "model": "demo"}, user_id=admin.id)
    with pytest.raises(Conflict):
        await store.add("team", config, user_id=admin.id)
    got = await store.get("team")
    assert got is not None and got.config == config and got.updated_at == added.updated_at
    assert [m.name for m in await store.list()] == ["alpha", "team"]

    clock.advance(5)
    replaced = await store.replace("team", {**config, "model": "m2"})
    again = await store.get("team")
    assert again is not None and again.config["model"] == "m2"
    assert again.updated_at == replaced.updated_at > added.updated_at  # a new version

    await store.remove("team")
    with pytest.raises(NotFound):
        await store.remove("team")
    with pytest.raises(NotFound):
        await store.replace("team", config)
    assert [m.name for m in await store.list()] == ["alpha"]
