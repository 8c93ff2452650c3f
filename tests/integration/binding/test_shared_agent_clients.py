"""The API's exec proxy and a chat borrow one agent client (``agentconn/clients.py``), and a
chat's binding evicted mid-request never closes the client the proxy is using."""

from __future__ import annotations

import asyncio
import time

import pytest
from binding_env import BindingEnv

from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, script_model

pytestmark = pytest.mark.integration

EXECUTE = script_model([Call("execute", {"command": "echo hi"}), Say("ok")])


async def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_chat_eviction_never_closes_the_client_an_api_request_holds(
    env: BindingEnv,
) -> None:
    ws, agent = await env.create_workspace()
    worker = env.start_worker()
    clients = env.graph.agent_clients
    chat = await env.new_chat("turn 1", EXECUTE, workspace_id=ws)
    chat = await env.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    assert clients.holders(agent.id) == 1  # the chat's cached conn, kept across turns
    marker = env.graph.backends["local"].home(ws) / "api-started"
    call = asyncio.create_task(
        env.server.client.post(
            f"/api/v1/workspaces/{ws}/exec",
            json={"command": 'touch "$HOME/api-started"; sleep 1; echo api-done'},
        )
    )
    await _wait_for(marker.exists, 20, "the API's command to start")
    assert clients.holders(agent.id) == 2 and clients.open_clients == 1  # one shared client
    worker._states[chat.id].conns.evict()  # what a build event does to the chat
    await _wait_for(lambda: clients.holders(agent.id) == 1, 5, "the chat to give its conn back")
    response = await asyncio.wait_for(call, 30)
    assert response.status_code == 200, response.text
    assert response.json()["output"].strip() == "api-done", response.text
    assert clients.holders(agent.id) == 0 and clients.idle_clients == 1  # kept for reuse
    dials = len(env.dialer.calls)
    chat = await env.turn(chat.id, "turn 2")  # the evicted chat dials again, on the same client
    assert chat.status is ChatStatus.WAITING, chat.last_error
    assert len(env.dialer.calls) == dials + 1 and clients.open_clients == 1
