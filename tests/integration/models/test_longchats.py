"""Long chats keep working (issue #16): a context budget, elision, compaction, overflow
recovery, /compact and /clear. A real server (uvicorn, SQLite, the real worker and
registry) talks to the fake OpenAI-compatible server on a loopback socket, which enforces
its own context window with its own tokenizer and answers like a real provider when a
request does not fit. Only the fake is scripted."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from models_env import model_entry, record_stream, start_server, wait_turn

from support.server import RunningServer
from tether.chatd.compaction import longchat_of
from tether.chatd.context import ELIDED_PREFIX
from tether.chatd.elision import SUMMARY_HEADER
from tether.testing.fake_openai import SUMMARY_ANSWER, FakeOpenAI, prompt_tokens
from tether.workspaces.template_parse import parse_template, spec_to_json

pytestmark = pytest.mark.usefixtures("allow_loopback_provider")

# The window the fake enforces, a few times what the fixed prompt and the tool definitions
# take (measured below: ~1,700 of the fake's tokens); each tool result is ~1,000 tokens and
# each user message ~300, so 40 turns hold ~50,000 tokens — >8x the window.
WINDOW = 6000
TURNS = 40
DESCRIPTION = " ".join(f"feature-{i}" for i in range(330))  # ~3.5 KB per list_templates


def _template(name: str) -> str:
    return f"""
name: {name}
description: {DESCRIPTION}
backend: local
agents:
  - name: main
    chat: true
"""


async def _push_template(server: RunningServer) -> None:
    admin = await server.graph.users.get_user_by_name("admin")
    spec = parse_template(_template("big"))
    await server.graph.template_store.push(
        spec=spec_to_json(spec), source=_template("big"), user_id=admin.id
    )


def _texts(body: dict[str, Any]) -> str:
    return json.dumps(body.get("messages", []))


def _pairs_intact(body: dict[str, Any]) -> bool:
    """Every tool call in the request is answered by a tool message with its id."""
    messages = body.get("messages", [])
    calls = [
        c["id"] for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []
    ]
    results = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    return all(c in results for c in calls) and results <= set(calls)


async def _send(client: httpx.AsyncClient, chat_id: str, text: str) -> dict[str, Any]:
    response = await client.post(f"/api/v1/chats/{chat_id}/messages", json={"content": text})
    assert response.status_code == 200, response.text
    return await wait_turn(client, chat_id, ceiling_s=30)


async def test_forty_turns_with_large_tool_output_stay_inside_the_window(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(context_window=WINDOW).running() as fake,
        start_server(
            tmp_path,
            [model_entry("small", fake.url, context_window=WINDOW, request_timeout_s=10)],
        ) as server,
    ):
        await _push_template(server)
        alice = await server.user_client("alice")
        first = "My goal: keep a log of the templates. " + "please list them. " * 15
        chat = (await alice.post("/api/v1/chats", json={"content": first})).json()
        events = record_stream(server, chat["id"])
        done = await wait_turn(alice, chat["id"], ceiling_s=30)
        assert done["status"] == "waiting", done
        fixed = fake.prompt_tokens[0]
        for turn in range(2, TURNS + 1):
            done = await _send(alice, chat["id"], f"turn {turn}: list again. " + "x y " * 140)
            assert (done["status"], done["last_error"]) == ("waiting", None), (turn, done)
        compactions = (await alice.get(f"/api/v1/chats/{chat['id']}/compactions")).json()
        page = (await alice.get(f"/api/v1/chats/{chat['id']}/messages?limit=500")).json()
        usage = await longchat_of(server.graph).store.usage(uuid.UUID(chat["id"]))
        await alice.aclose()

    print(f"fixed prompt + tools: {fixed} tokens (fake tokenizer); window {WINDOW}")
    assert fixed * 2 < WINDOW < fixed * 6  # "a few times" the fixed part
    # the model never received a request above its window, and never refused one
    assert fake.overflows == 0
    assert max(fake.prompt_tokens) <= WINDOW
    assert sum(fake.prompt_tokens) > 0
    bodies = [b for b in fake.requests if b.get("tools")]
    print(f"{len(compactions)} compactions in {TURNS} turns")
    # elision first, then compaction
    elided = next(i for i, b in enumerate(bodies) if ELIDED_PREFIX in _texts(b))
    compacted = next(i for i, b in enumerate(bodies) if SUMMARY_HEADER in _texts(b))
    assert elided < compacted
    # every request keeps each tool call with its result
    assert all(_pairs_intact(b) for b in bodies)
    # the summary is persisted; the goal survives; the recent exchanges are verbatim
    assert compactions and all(c["kind"] == "compact" for c in compactions)
    assert compactions[-1]["summary"] == SUMMARY_ANSWER
    last = bodies[-1]
    assert SUMMARY_HEADER in _texts(last) and "My goal: keep a log" in _texts(last)
    assert f"turn {TURNS}: list again." in _texts(last)
    tool_msgs = [m for m in last["messages"] if m.get("role") == "tool"]
    assert tool_msgs and "feature-329" in tool_msgs[-1]["content"]  # newest result in full
    # the instruction (system) prompt is in every request
    assert all(b["messages"][0]["role"] == "system" for b in bodies)
    assert "You are tether" in last["messages"][0]["content"]
    # the earlier messages are still readable, marked compacted
    flags = [m["compacted"] for m in page["messages"]]
    assert flags[0] is True and flags[-1] is False
    assert sum(1 for m in page["messages"] if m["role"] == "user") == TURNS
    assert any(e == "compaction" for e, _ in events)
    # usage is recorded per request, as the provider reported it
    sent = zip(fake.requests, fake.prompt_tokens, strict=True)
    assert [u[0] for u in usage] == [tokens for body, tokens in sent if body.get("tools")]


@pytest.mark.parametrize("style", ["openai", "anthropic", "llama"])
async def test_provider_context_length_error_compacts_once_and_retries(
    tmp_path: Path, style: str
) -> None:
    """The model states no window: only the provider's error tells that the chat outgrew
    it. One compaction, one retry, the turn ends well."""
    async with (
        FakeOpenAI(context_window=4000, overflow_style=style).running() as fake,  # type: ignore[arg-type]
        start_server(tmp_path, [model_entry("nowindow", fake.url, request_timeout_s=10)]) as server,
    ):
        await _push_template(server)
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "list templates"})).json()
        await wait_turn(alice, chat["id"], ceiling_s=30)
        outcomes = []
        for turn in range(6):
            done = await _send(alice, chat["id"], f"again {turn}")
            outcomes.append((done["status"], done["last_error_code"]))
        compactions = (await alice.get(f"/api/v1/chats/{chat['id']}/compactions")).json()
        await alice.aclose()
    assert fake.overflows >= 1
    assert compactions
    assert outcomes == [("waiting", None)] * 6


async def test_a_window_too_small_for_the_prompt_ends_with_context_overflow(
    tmp_path: Path,
) -> None:
    async with (
        FakeOpenAI(context_window=300).running() as fake,
        start_server(tmp_path, [model_entry("tiny", fake.url, request_timeout_s=10)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hello"})).json()
        done = await wait_turn(alice, chat["id"], ceiling_s=30)
        await alice.aclose()
    assert done["status"] == "error"
    assert done["last_error_code"] == "context_overflow"
    assert "Remediation:" in done["last_error"] and "/clear" in done["last_error"]
    assert fake.overflows >= 1


async def test_a_message_that_cannot_fit_alone_is_refused_at_send(tmp_path: Path) -> None:
    async with (
        FakeOpenAI().running() as fake,
        start_server(tmp_path, [model_entry("small", fake.url, context_window=4000)]) as server,
    ):
        alice = await server.user_client("alice")
        huge = "word " * 4000  # ~5,000 tokens
        refused = await alice.post("/api/v1/chats", json={"content": huge})
        # titled by the user: no automatic title request joins the counted ones
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "title": "hi"})).json()
        await wait_turn(alice, chat["id"], ceiling_s=30)
        later = await alice.post(f"/api/v1/chats/{chat['id']}/messages", json={"content": huge})
        queue = (await alice.get(f"/api/v1/chats/{chat['id']}/queue")).json()
        page = (await alice.get(f"/api/v1/chats/{chat['id']}/messages")).json()
        # refused inside the send's transaction: the chat did not become pending either
        status = (await alice.get(f"/api/v1/chats/{chat['id']}")).json()["status"]
        await alice.aclose()
    assert status == "waiting"
    assert len(fake.requests) == 2  # the one turn of "hi" (a tool call, then the answer)
    for response in (refused, later):
        assert response.status_code == 413, response.text
        body = response.json()
        assert body["code"] == "context_overflow" and body["remediation"]
    # nothing of the huge message was stored or queued
    assert queue == [] and "word word" not in json.dumps(page["messages"])


async def test_compact_and_clear_by_hand(tmp_path: Path) -> None:
    async with (
        FakeOpenAI().running() as fake,
        start_server(tmp_path, [model_entry("m", fake.url, request_timeout_s=10)]) as server,
    ):
        alice = await server.user_client("alice")
        bob = await server.user_client("bob")
        chat = (await alice.post("/api/v1/chats", json={"content": "first goal"})).json()
        await wait_turn(alice, chat["id"], ceiling_s=30)
        for turn in range(4):
            await _send(alice, chat["id"], f"step {turn}")
        other = await bob.post(f"/api/v1/chats/{chat['id']}/compact")
        compacted = await alice.post(f"/api/v1/chats/{chat['id']}/compact")
        before = len(fake.requests)
        await _send(alice, chat["id"], "after compact")
        after_compact = fake.requests[before]
        cleared = await alice.post(f"/api/v1/chats/{chat['id']}/clear")
        before = len(fake.requests)
        await _send(alice, chat["id"], "after clear")
        after_clear = fake.requests[before]
        page = (await alice.get(f"/api/v1/chats/{chat['id']}/messages?limit=500")).json()
        await alice.aclose()
        await bob.aclose()
    assert other.status_code == 404  # another user's chat: not even its existence
    assert compacted.status_code == 200, compacted.text
    assert compacted.json()["kind"] == "compact" and compacted.json()["number"] == 1
    text = _texts(after_compact)
    assert SUMMARY_HEADER in text and "first goal" in text and "after compact" in text
    assert '"step 0"' not in text  # summarised, not sent verbatim
    assert cleared.status_code == 200 and cleared.json()["kind"] == "clear"
    text = _texts(after_clear)
    assert SUMMARY_HEADER not in text and "first goal" not in text and "after compact" not in text
    users = [m for m in after_clear["messages"] if m["role"] == "user"]
    assert [u["content"] for u in users] == ["after clear"]
    assert prompt_tokens(after_clear) < prompt_tokens(after_compact)
    assert all(m["compacted"] for m in page["messages"][:-4])
    assert not any(m["compacted"] for m in page["messages"][-4:])


async def test_compact_and_clear_of_a_chat_whose_turn_runs_are_refused(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(behaviour="stall").running() as fake,
        start_server(tmp_path, [model_entry("stall", fake.url, request_timeout_s=30)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "stall"})).json()
        deadline = time.monotonic() + 20
        while not fake.requests:  # the turn runs once its model request arrives (then stalls)
            assert time.monotonic() < deadline, "the turn never asked the model"
            await asyncio.sleep(0.05)
        compacted = await alice.post(f"/api/v1/chats/{chat['id']}/compact")
        cleared = await alice.post(f"/api/v1/chats/{chat['id']}/clear")
        listed = (await alice.get(f"/api/v1/chats/{chat['id']}/compactions")).json()
        await alice.aclose()
    for refused, verb in ((compacted, "compact"), (cleared, "clear")):
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "conflict"
        assert f"{verb} it when the turn has ended" in refused.text
    assert listed == []


async def test_an_admin_configured_summary_model_writes_the_summary(tmp_path: Path) -> None:
    async with (
        FakeOpenAI().running() as chat_fake,
        FakeOpenAI().running() as summary_fake,
        start_server(
            tmp_path,
            [
                model_entry("main", chat_fake.url, request_timeout_s=10, summary_model="summ"),
                model_entry("summ", summary_fake.url, request_timeout_s=10),
            ],
        ) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "goal"})).json()
        await wait_turn(alice, chat["id"], ceiling_s=30)
        for turn in range(3):
            await _send(alice, chat["id"], f"step {turn}")
        compacted = await alice.post(f"/api/v1/chats/{chat['id']}/compact")
        await alice.aclose()
    assert compacted.status_code == 200, compacted.text
    assert compacted.json()["summary"] == SUMMARY_ANSWER
    asked = [b for b in summary_fake.requests if "Summarise the conversation" in _texts(b)]
    assert len(asked) == 1 and len(summary_fake.requests) == 1
    assert not any("Summarise the conversation" in _texts(b) for b in chat_fake.requests)


async def test_a_user_may_lower_the_threshold_for_their_chats(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(context_window=WINDOW).running() as fake,
        start_server(
            tmp_path,
            [model_entry("small", fake.url, context_window=WINDOW, request_timeout_s=10)],
        ) as server,
    ):
        await _push_template(server)
        alice = await server.user_client("alice")
        too_high = await alice.put("/api/v1/me/context", json={"compaction_threshold": 1.5})
        lowered = await alice.put("/api/v1/me/context", json={"compaction_threshold": 0.62})
        shown = (await alice.get("/api/v1/me/context")).json()
        chat = (await alice.post("/api/v1/chats", json={"content": "list them"})).json()
        await wait_turn(alice, chat["id"], ceiling_s=30)
        for turn in range(10):
            done = await _send(alice, chat["id"], f"turn {turn}: again. " + "x y " * 140)
            assert done["status"] == "waiting", done["last_error"]
        compactions = (await alice.get(f"/api/v1/chats/{chat['id']}/compactions")).json()
        await alice.aclose()
    assert too_high.status_code == 400 and too_high.json()["code"] == "invalid_input"
    assert lowered.status_code == 200 and shown == {"compaction_threshold": 0.62}
    assert compactions
    limit = 0.62 * WINDOW
    sent = [t for b, t in zip(fake.requests, fake.prompt_tokens, strict=True) if b.get("tools")]
    # calibrated after the first request; the model's own 0.7 would allow up to 4,200
    assert max(sent[1:]) <= limit * 1.05, (sent, limit)
