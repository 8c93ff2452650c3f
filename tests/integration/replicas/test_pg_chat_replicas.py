"""Two tether servers on one PostgreSQL, each with its API and chat worker: a chat sent to
one replica is run exactly once by some replica, and the other replica's stream delivers
its persisted reply (polling is the truth across replicas)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from support.server import fast_settings, running_server
from tether.domain.chat import ChatStatus

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

MODEL = "python:tether.llm.scripted:zero_latency_execute_model"


async def _wait_idle(client: httpx.AsyncClient, chat_id: str) -> dict:
    async with asyncio.timeout(30):
        while True:
            chat = (await client.get(f"/api/v1/chats/{chat_id}")).json()
            if chat["status"] in (ChatStatus.WAITING.value, ChatStatus.ERROR.value):
                return dict(chat)
            await asyncio.sleep(0.05)


async def test_two_replicas_share_chats(tmp_path, pg_db_url):
    cli = tmp_path / "cli.json"  # the first replica bootstraps the admin; both use its token
    key = tmp_path / "server.key"  # replicas share the server key
    shared = {"db_url": pg_db_url, "model": MODEL, "cli_config": cli, "server_key_file": key}
    a_settings = fast_settings(tmp_path / "a", **shared)
    b_settings = fast_settings(tmp_path / "b", **shared)
    async with running_server(a_settings) as a, running_server(b_settings) as b:
        chats = []
        for i in range(6):
            r = await a.client.post("/api/v1/chats", json={"content": f"hello {i}"})
            assert r.status_code == 201, r.text
            chats.append(r.json()["id"])
        for chat_id in chats:
            chat = await _wait_idle(b.client, chat_id)  # read through the other replica
            assert chat["status"] == "waiting", chat
            messages = (await b.client.get(f"/api/v1/chats/{chat_id}/messages")).json()
            texts = [
                p.get("text")
                for m in messages["messages"]
                if m["role"] == "assistant"
                for p in m["parts"]
            ]
            assert texts.count("ok") == 1  # the turn ran exactly once
        # a turn started through B is streamed to a subscriber on A (persisted messages)
        chat_id = chats[0]
        r = await b.client.post(f"/api/v1/chats/{chat_id}/messages", json={"content": "again"})
        assert r.status_code == 200, r.text
        seen: list[str] = []
        async with a.client.stream(
            "GET", f"/api/v1/chats/{chat_id}/stream", headers={"Last-Event-ID": "2.0"}
        ) as stream:
            async with asyncio.timeout(30):
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and '"ok"' in line:
                        seen.append(line)
                        break
        assert seen
