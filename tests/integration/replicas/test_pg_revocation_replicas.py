"""Revocation crosses replicas: a token revoked through one replica gets 401 on the other at
once, and a stream the other replica serves with it ends (the identity event travels over
LISTEN/NOTIFY; the periodic re-check is set far above the ceiling so it cannot be what ends
the stream)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from support.server import fast_settings, running_server
from tether.sdk import iter_sse

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

CEILING_S = 5.0


async def test_revocation_on_one_replica_ends_a_stream_on_the_other(tmp_path, pg_db_url):
    key = tmp_path / "server.key"
    shared = {
        "db_url": pg_db_url,
        "cli_config": tmp_path / "cli.json",
        "server_key_file": key,
        "stream_auth_recheck_s": 60.0,
        "run_chatd": False,
    }
    async with (
        running_server(fast_settings(tmp_path / "a", **shared)) as a,
        running_server(fast_settings(tmp_path / "b", **shared)) as b,
    ):
        r = await a.client.post("/api/v1/users", json={"name": "alice"})
        token = r.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=b.url, headers=headers, timeout=30) as alice_b:
            chat = (await alice_b.post("/api/v1/chats", json={"content": "hi"})).json()
            tokens = (await alice_b.get("/api/v1/users/me/tokens")).json()
            opened = asyncio.Event()
            events: list[str | None] = []

            async def read() -> None:
                async with alice_b.stream("GET", f"/api/v1/chats/{chat['id']}/stream") as resp:
                    opened.set()
                    async for event in iter_sse(resp.aiter_lines()):
                        events.append(event.event)

            reader = asyncio.create_task(read())
            try:
                await asyncio.wait_for(opened.wait(), 10)
                r = await a.client.delete(f"/api/v1/users/alice/tokens/{tokens[0]['id']}")
                assert r.status_code == 204
                assert (await alice_b.get("/api/v1/users/me")).status_code == 401
                start = time.monotonic()
                await asyncio.wait_for(reader, CEILING_S)
                assert time.monotonic() - start < CEILING_S
                assert events[-1] == "error"
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
