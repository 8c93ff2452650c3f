"""Helpers of the model tests: create a chat through the API, wait for its turn, record
what the chat's stream publishes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from support.server import RunningServer


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
