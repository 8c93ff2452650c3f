"""Migration 0004: chats that stored a model *spec* (older versions) are cleared to the
default model; configured names stay. Both dialects."""

from __future__ import annotations

from tether.db.chats import ChatStore
from tether.db.engine import create_engine
from tether.db.migrate import upgrade
from tether.db.users import UserStore
from tether.testing.clock import FakeClock


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
            chat = await store.create(
                owner_id=owner.id,
                title="t",
                first_message=[{"type": "text", "text": "hi"}],
                model=value,
            )
            ids[value] = chat.id
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
