"""A real tether API (uvicorn on a loopback port — in-process ASGI transports buffer SSE)
with no background jobs: tests play the chat worker themselves through the store and hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chat_env import ChatEnv, FakeWorker, Member, member

from support.server import free_port, serve_app
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
    members: list[Member] = []
    try:
        async with serve_app(create_app(graph), settings, graceful_shutdown_s=2) as url:
            members = [await member(graph, url, "alice"), await member(graph, url, "bob")]
            try:
                yield ChatEnv(graph, url, members[0], members[1])
            finally:
                for m in members:
                    await m.http.aclose()
                    await m.sdk.aclose()
    finally:
        await graph.aclose()


@pytest.fixture
def worker(env: ChatEnv) -> FakeWorker:
    return FakeWorker(env.graph)
