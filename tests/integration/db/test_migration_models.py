"""Migration 0004: chats that stored a model *spec* (older versions) are cleared to the
default model; configured names stay. Both dialects."""

from __future__ import annotations

import sqlalchemy as sa

from tether.db.chats import ChatStore
from tether.db.engine import create_engine
from tether.db.migrate import upgrade
from tether.db.tables import chats
from tether.db.users import UserStore
from tether.ids import new_id
from tether.testing.clock import FakeClock

# The chats table as of 0002: rows are written with the columns that existed then (the
# current store also writes columns later migrations add).
_CHATS_0002 = sa.table(
    "chats",
    *(
        sa.column(name, chats.c[name].type)
        for name in (
            "id",
            "owner_id",
            "title",
            "status",
            "model",
            "archived",
            "interrupt_requested",
            "created_at",
            "updated_at",
        )
    ),
)


async def test_stored_specs_are_cleared_names_kept(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "0002")
        clock = FakeClock()
        owner = await UserStore(engine, clock).create_user("u", "member")
        store = ChatStore(engine, clock)
        values = ["python:sys:exit", "openai-compatible:x@http://h/v1", "openai:gpt-4o", "demo"]
        ids = {}
        for value in [*values, None]:
            chat_id = new_id()
            async with engine.begin() as conn:
                await conn.execute(
                    _CHATS_0002.insert().values(
                        id=chat_id,
                        owner_id=owner.id,
                        title="t",
                        status="waiting",
                        model=value,
                        archived=False,
                        interrupt_requested=False,
                        created_at=clock.now(),
                        updated_at=clock.now(),
                    )
                )
            ids[value] = chat_id
        await upgrade(engine)
        after = {value: (await store.get(chat_id)).model for value, chat_id in ids.items()}
        assert after == {
            "python:sys:exit": None,
            "openai-compatible:x@http://h/v1": None,
            "openai:gpt-4o": None,
            "demo": "demo",
            None: None,
        }
    finally:
        await engine.dispose()
