"""A real tether API (uvicorn on a loopback port — in-process ASGI transports buffer SSE)
with no background jobs: tests play the chat worker themselves through the store and hub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from chat_env import ChatEnv, FakeWorker, Member, member

from support.server import free_port
from tether.api.app import create_app
from tether.settings import Settings
from tether.wiring import build_graph


@pytest.fixture
async def env(tmp_path: Path, db_url: str) -> AsyncIterator[ChatEnv]:
    """Once per dialect: SQLite and PostgreSQL (``db_url``)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        port=free_port(),
        cli_config=tmp_path / "c.json",
        run_chatd=False,  # the tests play the worker (FakeWorker)
        run_provisioner=False,
    )
    graph = await build_graph(settings)
    await graph.users.create_user("root", "admin")
    app = create_app(graph)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    url = settings.server_url()
    members: list[Member] = []
    try:
        for _ in range(250):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "test server did not start"
        members = [await member(graph, url, "alice"), await member(graph, url, "bob")]
        yield ChatEnv(graph, url, members[0], members[1])
    finally:
        for m in members:
            await m.http.aclose()
            await m.sdk.aclose()
        server.should_exit = True
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await graph.aclose()


@pytest.fixture
def worker(env: ChatEnv) -> FakeWorker:
    return FakeWorker(env.graph)
