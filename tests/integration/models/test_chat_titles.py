"""Chat title regeneration through the real OpenAI-compatible client against the fake
provider on a loopback socket: the model names the conversation, provider failures are typed
and leave the title alone, other users' chats are not found."""

from __future__ import annotations

from pathlib import Path

import pytest
from models_env import model_entry, start_server, wait_turn

from tether.chatd.titles import TITLE_PROMPT
from tether.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.usefixtures("allow_loopback_provider")


async def test_regenerate_title_asks_the_chats_model_without_tools(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(behaviour="answer").running() as fake,
        start_server(tmp_path, [model_entry("fake", fake.url, stream=False)]) as server,
    ):
        alice = await server.user_client("alice")
        bob = await server.user_client("bob")
        body = {"content": "please fix the flaky login test", "model": "fake"}
        chat = (await alice.post("/api/v1/chats", json=body)).json()
        await wait_turn(alice, chat["id"], ceiling_s=20)
        asked = len(fake.requests)
        other = await bob.post(f"/api/v1/chats/{chat['id']}/title/regenerate")
        assert other.status_code == 404
        res = await alice.post(f"/api/v1/chats/{chat['id']}/title/regenerate")
        await alice.aclose()
        await bob.aclose()
    assert res.status_code == 200, res.text
    assert res.json()["title"] == "done"  # what the fake answers
    [request] = fake.requests[asked:]
    assert "tools" not in request
    sent = str(request["messages"])
    assert TITLE_PROMPT in sent and "User: please fix the flaky login test" in sent


async def test_silent_provider_is_provider_timeout_and_the_title_stays(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(behaviour="silent").running() as fake,
        start_server(tmp_path, [model_entry("silent", fake.url, stream=False)]) as server,
    ):
        alice = await server.user_client("alice")
        body = {"content": "hi there", "model": "silent", "title": "Mine"}
        chat = (await alice.post("/api/v1/chats", json=body)).json()
        await wait_turn(alice, chat["id"], ceiling_s=20)  # the turn times out too
        res = await alice.post(f"/api/v1/chats/{chat['id']}/title/regenerate")
        after = (await alice.get(f"/api/v1/chats/{chat['id']}")).json()
        await alice.aclose()
    assert res.status_code == 504 and res.json()["code"] == "provider_timeout"
    assert after["title"] == "Mine"
