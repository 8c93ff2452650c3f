"""Liveness across replicas on PostgreSQL (issue #9 §1): the agent's session lives on
replica A, the chat runs on replica B. When the agent freezes, A marks it down and publishes
it; B's in-flight request fails with ``agent_unreachable`` within the liveness bound."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.agents import agent_pid, frozen
from support.server import fast_settings, running_server
from tether.chatd.install import install_chatd
from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, script_model
from tether.workspaces.template_parse import parse_template, spec_to_json

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[3]
FREEZE_TO_RESULT_S = 5.0  # the bound with the default 3 s liveness bound


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def b_waiting(graph: Any, chat_id: uuid.UUID) -> None:
    for _ in range(1500):  # 30 s
        if (await graph.chats.get(chat_id)).status is ChatStatus.WAITING:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the chat did not finish its turn")


async def test_frozen_agent_on_another_replica_fails_the_call_fast(
    tmp_path: Path, pg_db_url: str
) -> None:
    cli = tmp_path / "cli.json"
    key = tmp_path / "server.key"  # replicas share the server key
    common = {"db_url": pg_db_url, "cli_config": cli, "run_chatd": False, "server_key_file": key}
    a_settings = fast_settings(tmp_path / "a", **common)  # API + provisioner: sessions here
    b_settings = fast_settings(tmp_path / "b", **common, run_provisioner=False)
    command = 'echo step-one; touch "$HOME/started"; sleep 30'
    model = script_model([Call("execute", {"command": command, "timeout": "60s"}), Say("k")])
    async with running_server(a_settings) as a, running_server(b_settings) as b:
        worker = install_chatd(b.graph, model_for=lambda _chat: model, register=False)
        worker_task = asyncio.create_task(worker.run())
        try:
            owner = await a.graph.users.get_user_by_name("admin")
            source = (REPO / "examples" / "templates" / "python.yaml").read_text()
            template, _ = await a.graph.template_store.push(
                spec=spec_to_json(parse_template(source)), source=source, user_id=owner.id
            )
            ws, _build = await a.graph.workspaces.create(owner, template=template, name="pgl")
            await a.wait_ready(str(ws.id), timeout=30)
            [agent] = await a.graph.agents.latest_build_agents(ws.id)
            chat = await b.graph.chats.create(
                owner_id=owner.id,
                title="go",
                first_message=[{"type": "text", "text": "go"}],
                workspace_id=ws.id,
            )
            worker.wake()
            # the workspace has a private /tmp: the marker is in its home
            marker = a.graph.backends["local"].home(ws.id) / "started"
            await until(marker.exists, 30)
            await asyncio.sleep(1.0)  # the agent flushes output every 50 ms
            with frozen(await agent_pid(a.graph, ws.id)):
                froze = time.monotonic()
                await b_waiting(b.graph, chat.id)
                elapsed = time.monotonic() - froze
                assert b.graph.liveness.is_down(agent.id)  # B heard it on the bus
            parts = [
                p
                for m in await b.graph.chats.messages(chat.id)
                for p in m.parts
                if p.get("type") == "tool-result"
            ]
            [result] = parts
            assert result["error_code"] == "agent_unreachable", result
            assert "step-one" in result["result"]
            assert elapsed < FREEZE_TO_RESULT_S + 1.0, f"took {elapsed:.2f}s"  # + the turn's end
        finally:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
