"""The send request (``POST /api/v1/chats/{id}/messages``, issue #12) on both dialects: at
most two statements on a warm idle chat (the guarded UPDATE … RETURNING that also checks
ownership and returns the chat's summary, the message INSERT), token auth from the cache;
one send path whether or not it switches the model or plan mode; and the
ownership check folded into the UPDATE still answers exactly as before — 404 for another
member's chat whatever its state or the message, 413 before anything is written, the
admin may send to anyone's chat. The one-statement summary (db/chatsummary.py) agrees with
the three queries it replaced."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from chat_env import FakeWorker, member

from support.server import free_port, serve_app
from tether.api.app import create_app
from tether.db.tables import chat_queued_messages, chat_usage
from tether.domain.chat import ChatStatus
from tether.llm.config import AdminModelInput
from tether.settings import Settings
from tether.wiring import Graph, build_graph

pytestmark = pytest.mark.integration


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[Graph, str]]:
    """A real API with its token cache listening (on PostgreSQL opted in)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        port=free_port(),
        cli_config=tmp_path / "c.json",
        run_chatd=False,
        run_provisioner=False,
        auth_cache_across_replicas=True,
    )
    graph = await build_graph(settings)
    assert graph.token_cache is not None
    app = create_app(graph, background=[graph.token_cache.run])
    try:
        async with serve_app(app, settings, graceful_shutdown_s=2) as url:
            yield graph, url
    finally:
        await graph.aclose()


@contextlib.contextmanager
def statements(graph: Graph) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = graph.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


async def _idle(graph: Graph, chat_id: str) -> None:
    """Play the worker: the chat's first turn ends, the chat waits."""
    worker = FakeWorker(graph)
    await worker.claim()
    await worker.finish(uuid.UUID(chat_id))
    assert (await graph.chats.get(uuid.UUID(chat_id))).status is ChatStatus.WAITING


async def test_a_send_to_a_warm_chat_costs_two_statements(served) -> None:
    graph, url = served
    alice = await member(graph, url, "alice")
    try:
        r = await alice.http.post("/api/v1/chats", json={"content": "hi", "labels": {"k": "v"}})
        chat = r.json()
        await _idle(graph, chat["id"])
        assert (await alice.http.get(f"/api/v1/chats/{chat['id']}")).status_code == 200  # warm
        with statements(graph) as seen:
            r = await alice.http.post(f"/api/v1/chats/{chat['id']}/messages", json={"content": "x"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["queued"] is False and body["message"]["seq"] == 2
        assert body["chat"]["status"] == "pending" and body["chat"]["labels"] == {"k": "v"}
        assert len(seen) <= 2, seen
    finally:
        await alice.http.aclose()
        await alice.sdk.aclose()


async def test_another_members_chat_is_404_in_every_state(served) -> None:
    graph, url = served
    alice, bob = await member(graph, url, "alice"), await member(graph, url, "bob")
    try:
        chat = (await alice.http.post("/api/v1/chats", json={"content": "hi"})).json()
        path = f"/api/v1/chats/{chat['id']}/messages"
        huge = {"content": "x" * 200}
        worker = FakeWorker(graph)
        for state in ("pending", "running", "waiting"):
            if state == "running":
                await worker.claim()
            if state == "waiting":
                await worker.finish(uuid.UUID(chat["id"]))
            assert (await graph.chats.get(uuid.UUID(chat["id"]))).status.value == state
            for body in ({"content": "x"}, {"content": "x", "busy": "interrupt"}, huge):
                r = await bob.http.post(path, json=body)
                assert r.status_code == 404, r.text
                assert r.json()["code"] == "not_found"
        r = await bob.http.post(f"/api/v1/chats/{uuid.uuid4()}/messages", json={"content": "x"})
        assert r.status_code == 404
        # nothing of bob's reached the chat
        msgs = (await alice.http.get(path)).json()["messages"]
        assert [m["seq"] for m in msgs] == [1]
        assert (await alice.http.get(f"/api/v1/chats/{chat['id']}/queue")).json() == []
        # the admin may send to it (admins act on every chat)
        admin = await graph.users.create_user("root", "admin")
        token, _ = await graph.users.create_token(admin.id, "t")
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as root:
            r = await root.post(path, json={"content": "from the admin"})
        assert r.status_code == 200 and r.json()["message"]["seq"] == 2
    finally:
        for m in (alice, bob):
            await m.http.aclose()
            await m.sdk.aclose()


async def test_the_summary_query_agrees_with_the_three_it_replaced(served) -> None:
    graph, url = served
    alice = await member(graph, url, "alice")
    try:
        ids = []
        for i, labels in enumerate(({"b": "2", "a": "1"}, {}, {"z": ""})):
            r = await alice.http.post("/api/v1/chats", json={"content": f"c{i}", "labels": labels})
            ids.append(uuid.UUID(r.json()["id"]))
        for _ in range(2):  # chat 0 is pending: these queue
            await alice.http.post(f"/api/v1/chats/{ids[0]}/messages", json={"content": "q"})
        async with graph.engine.begin() as conn:
            for i, (inp, out) in enumerate(((7, 3), (11, 0))):
                await conn.execute(
                    chat_usage.insert().values(
                        id=uuid.uuid4(),
                        chat_id=ids[2],
                        model="m",
                        input_tokens=inp,
                        output_tokens=out,
                        created_at=graph.clock.now(),
                        owner_id=alice.user.id,
                        turn_seq=i + 1,
                    )
                )
        store = graph.chats
        counts = await store.queued_counts(ids)
        labels = await store.labels.of(ids)
        usage = await store.usage.chat_totals(ids)
        summaries = await store.summaries.of([*ids, uuid.uuid4()])
        for chat_id in ids:
            s = summaries[chat_id]
            assert s.queued == counts.get(chat_id, 0)
            assert list(s.labels.items()) == list(labels.get(chat_id, {}).items())
            old = usage.get(chat_id)
            mine = (s.usage.input_tokens, s.usage.output_tokens) if s.usage else None
            assert mine == ((old.input_tokens, old.output_tokens) if old else None)
        assert summaries[ids[0]].queued == 2
        assert list(summaries[ids[0]].labels) == ["a", "b"]
        assert summaries[ids[2]].usage is not None and summaries[ids[2]].usage.total == 21
        assert await store.summaries.of([]) == {}
    finally:
        await alice.http.aclose()
        await alice.sdk.aclose()


async def _usage(graph: Graph, chat_id: uuid.UUID, owner_id: uuid.UUID, *tokens: int) -> None:
    async with graph.engine.begin() as conn:
        for i, n in enumerate(tokens):
            await conn.execute(
                chat_usage.insert().values(
                    id=uuid.uuid4(),
                    chat_id=chat_id,
                    model="m",
                    input_tokens=n,
                    output_tokens=n // 2,
                    created_at=graph.clock.now(),
                    owner_id=owner_id,
                    turn_seq=i + 1,
                )
            )


async def test_a_sends_summary_comes_with_its_update_and_agrees_with_the_query(served) -> None:
    """The persisted send answers with the summary its guarded UPDATE returned (scalar
    subqueries; labels as one JSON object per dialect): the same as the summary query
    gives — labels with JSON's special characters in key order, usage, a queue left on an
    idle chat — and the same as before for a chat with none of them."""
    graph, url = served
    alice = await member(graph, url, "alice")
    try:
        labels = {"z/9": 'q"uo\\te\n', "a.b": "ünï ✓", "m-1": ""}
        ids = []
        for i, lab in enumerate((labels, {})):
            r = await alice.http.post("/api/v1/chats", json={"content": f"c{i}", "labels": lab})
            ids.append(uuid.UUID(r.json()["id"]))
            await _idle(graph, str(ids[-1]))
        await _usage(graph, ids[0], alice.user.id, 7, 11, 2**31 - 1)
        async with graph.engine.begin() as conn:  # a queue left behind on the idle chat
            await conn.execute(
                chat_queued_messages.insert().values(
                    id=uuid.uuid4(), chat_id=ids[0], parts=[], created_at=graph.clock.now()
                )
            )
        for chat_id in ids:
            with statements(graph) as seen:
                r = await alice.http.post(
                    f"/api/v1/chats/{chat_id}/messages", json={"content": "x"}
                )
            assert r.status_code == 200, r.text
            assert not [s for s in seen if "'q' AS kind" in s], seen  # no summary query
            got = r.json()["chat"]
            s = (await graph.chats.summaries.of([chat_id]))[chat_id]
            assert (got["queued"], got["labels"]) == (s.queued, s.labels)
            assert list(got["labels"]) == list(s.labels)
            u = s.usage  # None: the chat JSON shows zeros
            assert got["usage"] == {
                "input_tokens": u.input_tokens if u else 0,
                "output_tokens": u.output_tokens if u else 0,
            }
            assert got == (await alice.http.get(f"/api/v1/chats/{chat_id}")).json()
        first = (await alice.http.get(f"/api/v1/chats/{ids[0]}")).json()
        assert first["labels"] == dict(sorted(labels.items())) and first["queued"] == 1
        assert first["usage"]["input_tokens"] == 7 + 11 + 2**31 - 1
    finally:
        await alice.http.aclose()
        await alice.sdk.aclose()


async def test_switching_model_or_plan_mode_goes_the_one_send_path(served) -> None:
    """``model`` / ``plan_mode`` are written with the message in the send's transaction:
    an idle chat and a busy one (queued) both take them; a refused send (unknown model, a
    message too large) writes neither; another member's chat is 404 before the model is
    looked at; the send costs the two statements plus one for the switch."""
    graph, url = served
    alice, bob = await member(graph, url, "alice"), await member(graph, url, "bob")
    try:
        chat = (await alice.http.post("/api/v1/chats", json={"content": "hi"})).json()
        path = f"/api/v1/chats/{chat['id']}/messages"
        await _idle(graph, chat["id"])
        with statements(graph) as seen:
            r = await alice.http.post(path, json={"content": "x", "plan_mode": True})
        assert r.status_code == 200, r.text
        assert r.json()["chat"]["plan_mode"] is True and r.json()["chat"]["status"] == "pending"
        assert len(seen) <= 3, seen
        # busy: queued, and the switch still lands (from the next turn on)
        r = await alice.http.post(path, json={"content": "y", "plan_mode": False})
        assert r.status_code == 200 and r.json()["queued"] is True
        assert r.json()["chat"]["plan_mode"] is False
        stored = await graph.chats.get(uuid.UUID(chat["id"]))
        assert stored.plan_mode is False
        # refused: nothing written, not even the plan-mode switch asked with it
        bad = {"content": "z", "plan_mode": True, "model": "no-such-model"}
        r = await alice.http.post(path, json=bad)
        assert r.status_code == 400, r.text
        assert (await graph.chats.get(uuid.UUID(chat["id"]))).plan_mode is False
        assert len((await alice.http.get(f"{path}")).json()["messages"]) == 2
        assert len((await alice.http.get(f"/api/v1/chats/{chat['id']}/queue")).json()) == 1
        # another member: 404 whatever the model asked for
        r = await bob.http.post(path, json=bad)
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        assert (await graph.chats.get(uuid.UUID(chat["id"]))).plan_mode is False
    finally:
        for m in (alice, bob):
            await m.http.aclose()
            await m.sdk.aclose()


async def test_a_model_asked_for_is_looked_up_before_the_sends_transaction(served) -> None:
    """Issue #12: a send that names a model looks it up (an admin-added model is a query)
    before its transaction, not while that holds the chat's row and SQLite's write lock;
    the switch still lands with the message, and the send still costs its statements plus
    the look-up and the switch."""
    graph, url = served
    alice = await member(graph, url, "alice")
    try:
        admin = await graph.users.create_user("root", "admin")
        spec = AdminModelInput(name="admin-gpt", provider="openai", model="gpt-4o")
        await graph.models.add(spec, user_id=admin.id)
        chat = (await alice.http.post("/api/v1/chats", json={"content": "hi"})).json()
        await _idle(graph, chat["id"])
        path = f"/api/v1/chats/{chat['id']}/messages"
        with statements(graph) as seen:
            r = await alice.http.post(path, json={"content": "x", "model": "admin-gpt"})
        assert r.status_code == 200, r.text
        assert r.json()["chat"]["model"] == "admin-gpt"
        lookups = [i for i, s in enumerate(seen) if "FROM llm_models" in s]
        settle = next(i for i, s in enumerate(seen) if s.lstrip().startswith("UPDATE chats"))
        assert lookups and max(lookups) < settle, seen
        assert (await graph.chats.get(uuid.UUID(chat["id"]))).model == "admin-gpt"
    finally:
        await alice.http.aclose()
        await alice.sdk.aclose()
