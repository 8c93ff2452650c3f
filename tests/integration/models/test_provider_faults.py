"""Providers are bounded and understood (issue #9 §4): the real pydantic-ai OpenAIChatModel,
through tether's registry and worker, against a fake OpenAI-compatible server on a real
loopback socket. Only the fake server is scripted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from models_env import (
    SECRET_KEY,
    assistant_texts,
    model_entry,
    record_stream,
    start_server,
    wait_turn,
)

from tether.testing.fake_openai import LLAMA_STREAM_TOOLS_ERROR, FakeOpenAI

pytestmark = pytest.mark.usefixtures("allow_loopback_provider")

# The old behaviour: the OpenAI client's 600 s read timeout was the only bound (the chat
# stayed running >= 75 s). The model's timeouts are 1 s each; the turn must end well inside.
SILENT_CEILING_S = 10.0


async def test_silent_provider_ends_the_turn_with_provider_timeout(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(behaviour="silent").running() as fake,
        start_server(tmp_path, [model_entry("silent", fake.url)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "silent"})).json()
        events = record_stream(server, chat["id"])
        started = asyncio.get_running_loop().time()
        done = await wait_turn(alice, chat["id"], ceiling_s=SILENT_CEILING_S)
        elapsed = asyncio.get_running_loop().time() - started
        await alice.aclose()
    assert fake.requests, "the provider was asked"
    assert done["status"] == "error"
    assert done["last_error_code"] == "provider_timeout"
    assert "did not answer within 1 s" in done["last_error"]
    assert elapsed < SILENT_CEILING_S
    errors = [data for event, data in events if event == "error"]
    assert errors and errors[-1]["code"] == "provider_timeout"


async def test_stream_that_stalls_after_its_headers_ends_with_provider_timeout(
    tmp_path: Path,
) -> None:
    async with (
        FakeOpenAI(behaviour="stall").running() as fake,
        start_server(tmp_path, [model_entry("stall", fake.url)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "stall"})).json()
        done = await wait_turn(alice, chat["id"], ceiling_s=SILENT_CEILING_S)
        await alice.aclose()
    assert fake.requests and fake.requests[0].get("stream") is True
    assert (done["status"], done["last_error_code"]) == ("error", "provider_timeout")


@pytest.mark.parametrize("llama_error", ["http", "in_stream"])
async def test_llama_cannot_stream_with_tools_falls_back_to_plain_requests(
    tmp_path: Path, llama_error: str
) -> None:
    async with (
        FakeOpenAI(behaviour="llama", llama_error=llama_error).running() as fake,  # type: ignore[arg-type]
        start_server(tmp_path, [model_entry("llama", fake.url, stream=True)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "llama"})).json()
        done = await wait_turn(alice, chat["id"], ceiling_s=20)
        texts = await assistant_texts(alice, chat["id"])
        # a second turn goes straight to plain requests (the model remembers)
        before = len(fake.requests)
        await alice.post(f"/api/v1/chats/{chat['id']}/messages", json={"content": "again"})
        second = await wait_turn(alice, chat["id"], ceiling_s=20)
        await alice.aclose()
    assert (done["status"], done["last_error"]) == ("waiting", None)
    assert second["status"] == "waiting"
    assert texts[-1] == "done"
    streamed = [bool(r.get("stream")) for r in fake.requests]
    assert streamed[0] is True, "the first request tried to stream"
    assert streamed[1:before] and not any(streamed[1:before]), "then plain requests"
    assert not any(streamed[before:]), "no more failing stream attempts"


async def test_stream_false_model_never_streams(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(behaviour="llama").running() as fake,
        start_server(tmp_path, [model_entry("plain", fake.url, stream=False)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "plain"})).json()
        events = record_stream(server, chat["id"])
        done = await wait_turn(alice, chat["id"], ceiling_s=20)
        await alice.aclose()
    assert done["status"] == "waiting"
    assert fake.requests and not any(r.get("stream") for r in fake.requests)
    parts = [data for event, data in events if event == "message_part"]
    assert any(p.get("kind") == "text" for p in parts), "subscribers still see the parts"


async def test_assistant_tool_call_content_is_a_string(tmp_path: Path) -> None:
    """llama.cpp refuses ``content: null`` beside ``tool_calls``: tether sends a string."""
    async with (
        FakeOpenAI(behaviour="answer", strict_content=True).running() as fake,
        start_server(tmp_path, [model_entry("strict", fake.url)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "strict"})).json()
        done = await wait_turn(alice, chat["id"], ceiling_s=20)
        await alice.aclose()
    assert (done["status"], done["last_error"]) == ("waiting", None)
    replayed = [
        m
        for r in fake.requests
        for m in r["messages"]
        if m["role"] == "assistant" and m.get("tool_calls")
    ]
    assert replayed and all(m["content"] == "" for m in replayed)


async def test_refused_fallback_is_provider_unsupported_with_both_messages(
    tmp_path: Path,
) -> None:
    refusal = "tools are not supported by this model"
    async with (
        FakeOpenAI(behaviour="llama", fail_plain=(400, refusal)).running() as fake,
        start_server(tmp_path, [model_entry("llama", fake.url)]) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "llama"})).json()
        events = record_stream(server, chat["id"])
        done = await wait_turn(alice, chat["id"], ceiling_s=20)
        await alice.aclose()
    assert done["status"] == "error"
    assert done["last_error_code"] == "provider_unsupported"
    assert LLAMA_STREAM_TOOLS_ERROR in done["last_error"] and refusal in done["last_error"]
    assert [d["code"] for e, d in events if e == "error"] == ["provider_unsupported"]


async def test_provider_error_is_retried_per_model_then_keeps_the_providers_message(
    tmp_path: Path,
) -> None:
    async with (
        FakeOpenAI(fail=(503, "the backend is on fire")).running() as fake,
        start_server(
            tmp_path, [model_entry("flaky", fake.url, max_retries=2, retry_base_s=0.01)]
        ) as server,
    ):
        alice = await server.user_client("alice")
        chat = (await alice.post("/api/v1/chats", json={"content": "hi", "model": "flaky"})).json()
        events = record_stream(server, chat["id"])
        done = await wait_turn(alice, chat["id"], ceiling_s=20)
        await alice.aclose()
    assert done["status"] == "error"
    assert done["last_error_code"] == "provider_error"
    assert "the backend is on fire" in done["last_error"]
    assert SECRET_KEY not in done["last_error"]
    assert len(fake.requests) == 3, "one request and the model's two retries"
    assert [d["attempt"] for e, d in events if e == "retry"] == [1, 2]
