"""Helpers of the model tests: a real server (uvicorn, SQLite, the real chat worker and
model registry) whose models point at a fake OpenAI-compatible server on a loopback socket
(``tether.testing.fake_openai``); wait for a turn; record what the chat's stream publishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from support.server import RunningServer, fast_settings, running_server

SECRET_KEY = "sk-secret-do-not-leak-4711"


def model_entry(name: str, url: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai-compatible",
        "model": "fake-model",
        "base_url": url,
        "api_key_env": "FAKE_PROVIDER_API_KEY",
        "request_timeout_s": 1.0,
        "connect_timeout_s": 1.0,
        "max_retries": 0,
        **options,
    }


@contextlib.asynccontextmanager
async def start_server(
    tmp_path: Path, models: list[dict[str, Any]], **overrides: Any
) -> AsyncIterator[RunningServer]:
    settings = fast_settings(
        tmp_path,
        run_provisioner=False,
        models_json=json.dumps({"default": models[0]["name"], "models": models}),
        **overrides,
    )
    async with running_server(settings) as server:
        yield server


def record_stream(server: RunningServer, chat_ref: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every event the chat's stream hub publishes from now on (what SSE subscribers get)."""
    chat_id = uuid.UUID(str(chat_ref))
    seen: list[tuple[str, dict[str, Any]]] = []
    hub = server.graph.hub
    original = hub.publish

    def publish(cid: uuid.UUID, event: str, data: dict[str, Any]) -> Any:
        if cid == chat_id:
            seen.append((event, data))
        return original(cid, event, data)

    hub.publish = publish
    return seen


async def wait_turn(client: httpx.AsyncClient, chat_id: Any, *, ceiling_s: float) -> dict[str, Any]:
    """Poll the chat until its turn ended (waiting or error); fail past ``ceiling_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ceiling_s
    while True:
        chat: dict[str, Any] = (await client.get(f"/api/v1/chats/{chat_id}")).json()
        if chat["status"] in ("waiting", "error"):
            return chat
        if loop.time() > deadline:
            raise AssertionError(f"chat still {chat['status']} after {ceiling_s} s")
        await asyncio.sleep(0.05)


async def assistant_texts(client: httpx.AsyncClient, chat_id: Any) -> list[str]:
    page = (await client.get(f"/api/v1/chats/{chat_id}/messages")).json()
    return [
        part.get("text", "")
        for m in page["messages"]
        if m["role"] == "assistant"
        for part in m["parts"]
        if part.get("type") == "text"
    ]
