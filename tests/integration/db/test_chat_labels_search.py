"""Chat labels and title search in the chat store, on both dialects (docs/behaviour.md
§2.5): every label must match, search is a case-insensitive substring where ``%`` and ``_``
are literal, labels go with their chat, a write replaces the set, bad labels are refused."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import SystemClock
from tether.db.chatconfig import ChatConfigStore
from tether.db.chats import ChatStore
from tether.db.users import UserStore
from tether.errors import InvalidInput
from tether.ids import new_id

TEXT = [{"type": "text", "text": "hi"}]


async def test_labels_and_search(engine: AsyncEngine) -> None:
    users = UserStore(engine, SystemClock())
    owner = await users.create_user("bob", "member")
    other = await users.create_user("eve", "member")
    store = ChatStore(engine, SystemClock())

    async def chat(title: str, owner_id=owner.id, **labels: str):  # type: ignore[no-untyped-def]
        created = await store.create(owner_id=owner_id, title=title, first_message=TEXT)
        await store.labels.set(created.id, labels)
        return created.id

    fix = await chat("Fix the LOGIN test", team="web", prio="high")
    docs = await chat("Write docs", team="web")
    pct = await chat("100% done_now", team="ops")
    await chat("Fix login elsewhere", owner_id=other.id, team="web")

    async def ids(**kw):  # type: ignore[no-untyped-def]
        return {c.id for c in await store.list(owner_id=owner.id, **kw)}

    assert await ids(search="login") == {fix}  # any case; other owners never
    assert await ids(labels={"team": "web"}) == {fix, docs}
    assert await ids(labels={"team": "web", "prio": "high"}) == {fix}
    assert await ids(labels={"team": "web"}, search="docs") == {docs}
    assert await ids(labels={"team": "nope"}) == set()
    assert await ids(search="%") == {pct} and await ids(search="_") == {pct}
    assert await ids(search="0% d") == {pct} and await ids(search="e_n") == {pct}
    assert await ids(search="x%") == set()
    assert await store.labels.of([fix, docs, pct, new_id()]) == {
        fix: {"prio": "high", "team": "web"},
        docs: {"team": "web"},
        pct: {"team": "ops"},
    }
    # a write replaces the whole set; an empty one removes it
    await store.labels.set(fix, {"team": "api"})
    assert (await store.labels.of([fix]))[fix] == {"team": "api"}
    await store.labels.set(docs, {})
    assert docs not in await store.labels.of([docs])


@pytest.mark.parametrize(
    "labels",
    [
        {"Team": "x"},
        {"-x": "x"},
        {"a b": "x"},
        {"k" * 65: "x"},
        {"k": "v" * 257},
        {f"k{i}": "v" for i in range(33)},
    ],
)
async def test_bad_labels_are_invalid_input_and_nothing_changes(
    engine: AsyncEngine, labels: dict[str, str]
) -> None:
    owner = await UserStore(engine, SystemClock()).create_user("bob", "member")
    store = ChatStore(engine, SystemClock())
    created = await store.create(owner_id=owner.id, title="t", first_message=TEXT)
    await store.labels.set(created.id, {"keep": "me"})
    with pytest.raises(InvalidInput):
        await store.labels.set(created.id, labels)
    assert await store.labels.of([created.id]) == {created.id: {"keep": "me"}}


async def test_chat_config_upsert_and_defaults(engine: AsyncEngine) -> None:
    config = ChatConfigStore(engine, SystemClock())
    assert (await config.get()).template_allowlist == frozenset()
    t1, t2 = new_id(), new_id()
    await config.set_template_allowlist([t1, t2, t1])
    again = await config.set_template_allowlist([t2])
    assert again.template_allowlist == {t2} and again.allows(t2) and not again.allows(t1)
    await config.set_system_prompt("a")
    assert (await config.set_system_prompt("b")).system_prompt == "b"
    assert (await config.get()).user_prompt == ""


async def test_chat_config_concurrent_first_writes_all_succeed(engine: AsyncEngine) -> None:
    """Racing first writes of one key (insert vs insert) end in one row, no error."""
    config = ChatConfigStore(engine, SystemClock())
    texts = [f"prompt {i}" for i in range(8)]
    await asyncio.gather(*(config.set_user_prompt(t) for t in texts))
    assert (await config.get()).user_prompt in texts
