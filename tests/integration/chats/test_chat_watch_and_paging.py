"""What the web UI reads instead of the whole history and a polled list: history paged
backwards (``?latest=true`` / ``?before_seq=``) and the per-owner watch stream
(``GET /api/v1/me/chats/stream``), on a real socket, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from chat_env import ChatEnv, FakeWorker

from tether.api import watchpoll
from tether.db.engine import StatementCounter
from tether.db.tables import chats
from tether.sdk.chats import Chat
from tether.sdk.sse import SseDecoder

WATCH = "/api/v1/me/chats/stream"


async def test_history_pages_backwards_from_the_newest(env: ChatEnv) -> None:
    chat = await env.alice.chats.create("hi")
    for i in range(6):
        await env.graph.chats.append_message(
            chat.id, role="assistant", parts=[{"type": "text", "text": f"r{i}"}]
        )
    url = f"/api/v1/chats/{chat.id}/messages"
    newest = (await env.alice.http.get(url, params={"latest": "true", "limit": 3})).json()
    assert [m["seq"] for m in newest["messages"]] == [5, 6, 7]
    assert newest["prev_before_seq"] == 5 and newest["next_after_seq"] is None
    older = (await env.alice.http.get(url, params={"before_seq": 5, "limit": 3})).json()
    assert [m["seq"] for m in older["messages"]] == [2, 3, 4]
    assert older["prev_before_seq"] == 2
    first = (await env.alice.http.get(url, params={"before_seq": 2, "limit": 3})).json()
    assert [m["seq"] for m in first["messages"]] == [1]
    assert first["prev_before_seq"] is None
    # the SDK pages the same way
    page = await env.alice.chats.messages(chat.id, latest=True, limit=4)
    assert [m.seq for m in page.messages] == [4, 5, 6, 7] and page.prev_before_seq == 4
    page = await env.alice.chats.messages(chat.id, before_seq=4, limit=4)
    assert [m.seq for m in page.messages] == [1, 2, 3] and page.prev_before_seq is None
    # the forward paging is unchanged
    forward = (await env.alice.http.get(url, params={"limit": 2})).json()
    assert [m["seq"] for m in forward["messages"]] == [1, 2]


@pytest.mark.parametrize(
    "params",
    [
        {"before_seq": "0"},
        {"before_seq": "-1"},
        {"before_seq": "x"},
        {"before_seq": str(2**63)},
        {"latest": "maybe"},
        {"latest": "true", "limit": "0"},
        {"latest": "true", "limit": "501"},
        {"before_seq": "3", "after_seq": "1"},
    ],
)
async def test_bad_paging_parameters_are_a_typed_4xx(env: ChatEnv, params: dict[str, str]) -> None:
    chat = await env.alice.chats.create("hi")
    r = await env.alice.http.get(f"/api/v1/chats/{chat.id}/messages", params=params)
    assert r.status_code in (400, 422), r.text
    assert r.json()["code"]


async def test_another_members_history_is_not_found_backwards_either(env: ChatEnv) -> None:
    chat = await env.alice.chats.create("alice's secret")
    for params in ({"latest": "true"}, {"before_seq": "2"}):
        r = await env.bob.http.get(f"/api/v1/chats/{chat.id}/messages", params=params)
        assert r.status_code == 404
        assert "secret" not in r.text


@dataclass
class Watcher:
    events: list[tuple[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    error: BaseException | None = None

    async def wait_for(self, pred: Any, timeout: float = 10.0) -> list[tuple[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(self.events):
            if self.error is not None:
                raise AssertionError(f"watch failed: {self.error!r}")
            assert loop.time() < deadline, f"timed out; got {self.events}"
            await asyncio.sleep(0.02)
        return self.events


@contextlib.asynccontextmanager
async def watching(http: httpx.AsyncClient) -> AsyncIterator[Watcher]:
    w = Watcher()

    async def run() -> None:
        decoder = SseDecoder()
        try:
            async with http.stream("GET", WATCH) as r:
                assert r.status_code == 200, await r.aread()
                assert r.headers["content-type"].startswith("text/event-stream")
                async for line in r.aiter_lines():
                    ev = decoder.feed(line)
                    if ev is not None and ev.event:
                        w.events.append((ev.event, ev.json()))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            w.error = exc

    w.task = asyncio.create_task(run())
    try:
        await w.wait_for(lambda evs: any(e == "ready" for e, _ in evs))
        yield w
    finally:
        w.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await w.task


def of_chat(chat_id: Any, event: str) -> Any:
    return lambda evs: any(e == event and d["chat"]["id"] == str(chat_id) for e, d in evs)


async def test_watch_sends_created_status_title_and_archived(
    env: ChatEnv, worker: FakeWorker
) -> None:
    env.graph.chat_service.stream_poll_s = 0.05
    async with watching(env.alice.http) as w:
        chat = await env.alice.chats.create("watch me")
        events = await w.wait_for(of_chat(chat.id, "created"))
        created = next(d for e, d in events if e == "created")
        assert created["chat"]["title"] == "watch me"
        assert created["chat"]["owner_id"] == str(env.alice.user.id)
        await worker.claim()
        events = await w.wait_for(of_chat(chat.id, "status"))
        assert [d["chat"]["status"] for e, d in events if e == "status"][-1] == "running"
        await env.alice.http.patch(f"/api/v1/chats/{chat.id}", json={"title": "renamed"})
        events = await w.wait_for(of_chat(chat.id, "title"))
        assert [d["chat"]["title"] for e, d in events if e == "title"] == ["renamed"]
        await env.alice.chats.archive(chat.id)
        events = await w.wait_for(of_chat(chat.id, "archived"))
        assert [d["chat"]["archived"] for e, d in events if e == "archived"] == [True]
        # an unchanged chat is not sent again on later polls
        await asyncio.sleep(0.3)
        assert sum(1 for e, _ in w.events if e == "title") == 1


async def test_watch_of_another_member_receives_nothing_of_alices_chats(
    env: ChatEnv, worker: FakeWorker
) -> None:
    """Attack: bob watches while alice creates, runs, renames and archives a chat; bob's
    stream carries none of it (and no event but ``ready``)."""
    env.graph.chat_service.stream_poll_s = 0.05
    async with watching(env.bob.http) as bob, watching(env.alice.http) as alice:
        chat = await env.alice.chats.create("alice's secret plan")
        await worker.claim()
        await env.alice.http.patch(f"/api/v1/chats/{chat.id}", json={"title": "secret 2"})
        await env.alice.chats.archive(chat.id)
        # changes between two polls come as one event carrying the chat as it is now
        await alice.wait_for(lambda evs: any(d.get("chat", {}).get("archived") for _, d in evs))
        await asyncio.sleep(0.3)  # several more of bob's polls
        assert [e for e, _ in bob.events] == ["ready"]
        assert "secret" not in repr(bob.events)


async def test_watch_needs_a_valid_token(env: ChatEnv) -> None:
    async with httpx.AsyncClient(base_url=env.url, timeout=5) as anon:
        assert (await anon.get(WATCH)).status_code == 401
        r = await anon.get(WATCH, headers={"Authorization": "Bearer tok_forged"})
        assert r.status_code == 401


async def test_watch_ends_when_the_token_is_revoked(env: ChatEnv) -> None:
    env.graph.chat_service.stream_poll_s = 0.05
    user = await env.graph.users.create_user("carol", "member")
    token, info = await env.graph.users.create_token(user.id, "t")
    async with httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as http:
        async with watching(http) as w:
            r = await http.delete(f"/api/v1/users/me/tokens/{info.id}")
            assert r.status_code == 204, r.text
            assert w.task is not None
            await asyncio.wait_for(asyncio.shield(w.task), 10)  # the stream ended


async def test_sdk_watch_yields_ready_then_changes(env: ChatEnv) -> None:
    env.graph.chat_service.stream_poll_s = 0.05
    seen: list[tuple[str, Any]] = []

    async def follow() -> None:
        async for ev in env.alice.chats.watch():
            seen.append((ev.event, ev.data))
            if ev.event == "ready":
                await env.alice.chats.create("from the sdk")
            elif ev.event == "created":
                return

    await asyncio.wait_for(follow(), 10)
    assert [e for e, _ in seen] == ["ready", "created"]
    chat = Chat.model_validate(seen[1][1]["chat"])
    assert chat.title == "from the sdk" and chat.owner_id == env.alice.user.id


async def test_watch_moves_past_a_full_batch_of_changes(
    env: ChatEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More changes between two polls than one read takes: later polls still reach the
    newest (a full batch does not keep re-reading itself)."""
    monkeypatch.setattr(watchpoll, "BATCH", 2)
    env.graph.chat_service.stream_poll_s = 0.05
    async with watching(env.alice.http) as w:
        made = [await env.alice.chats.create(f"bulk {i}") for i in range(7)]
        for chat in made:
            await w.wait_for(of_chat(chat.id, "created"))


async def test_watch_pages_through_a_full_batch_stamped_alike(
    env: ChatEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More rows stamped with one moment than one read takes (one PostgreSQL transaction
    stamps every row it changes with the same ``now()``): the polls page through them by
    id and go on to later changes, rather than reading the first batch again for ever."""
    monkeypatch.setattr(watchpoll, "BATCH", 2)
    env.graph.chat_service.stream_poll_s = 3600.0  # the test drives the polls itself

    async def poll() -> None:
        poller = env.graph.extras["chat_watch_poller"]  # made with the first stream
        for _ in range(20):  # a few pages; the old cursor stopped after the first
            if not await poller.poll_once():
                return
        raise AssertionError("the poll kept finding full batches")

    async with watching(env.alice.http) as w:
        made = [await env.alice.chats.create(f"bulk {i}") for i in range(5)]
        await poll()
        for chat in made:
            await w.wait_for(of_chat(chat.id, "created"))
        async with env.graph.engine.begin() as conn:
            newest = await conn.scalar(sa.select(sa.func.max(chats.c.updated_at)))
            stamp = newest + timedelta(seconds=1)
            await conn.execute(
                chats.update()
                .where(chats.c.id.in_([c.id for c in made]))
                .values(title="renamed together", updated_at=stamp)
            )
            await conn.execute(  # a later change, after the five stamped alike
                chats.update()
                .where(chats.c.id == made[0].id)
                .values(title="renamed after", updated_at=stamp + timedelta(seconds=1))
            )
        await poll()

        def titles(evs: list[tuple[str, Any]]) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for e, d in evs:
                if e == "title":
                    out.setdefault(d["chat"]["id"], []).append(d["chat"]["title"])
            return out

        def all_renamed(evs: list[tuple[str, Any]]) -> bool:
            got = titles(evs)
            return all(str(c.id) in got for c in made) and "renamed after" in got.get(
                str(made[0].id), []
            )

        await w.wait_for(all_renamed, timeout=5.0)


async def test_one_query_per_poll_serves_every_watch_stream_and_stops_with_the_last(
    env: ChatEnv,
) -> None:
    """Three watch streams (alice twice, bob) cost one query per poll, not three; each gets
    its own owner's rows only; the polling stops when the last stream closes."""
    env.graph.chat_service.stream_poll_s = 3600.0  # the test drives the polls itself

    def watch_reads() -> int:
        return sum(
            1 for st in counter.total.statements if "FROM chats" in st and "updated_at >=" in st
        )

    with StatementCounter(env.graph.engine) as counter:
        async with (
            watching(env.alice.http) as a1,
            watching(env.alice.http) as a2,
            watching(env.bob.http) as bob,
        ):
            poller = env.graph.extras["chat_watch_poller"]
            assert watch_reads() == 3  # each stream's baseline
            chat = await env.alice.chats.create("seen twice, by alice only")
            await poller.poll_once()
            assert watch_reads() == 4  # one read for the three streams
            for w in (a1, a2):
                await w.wait_for(of_chat(chat.id, "created"))
            await poller.poll_once()  # nothing new for anyone: nothing sent
            assert [e for e, _ in bob.events] == ["ready"]
            assert sum(1 for e, _ in a1.events if e == "created") == 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while poller.running:  # every stream closed: the poll stops
            assert loop.time() < deadline, "the watch poll outlived its streams"
            await asyncio.sleep(0.02)
