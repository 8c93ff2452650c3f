"""Issue #12: a warm turn costs at most 8 statements on both dialects, counted end to end —
the send through :class:`~tether.chatd.service.ChatService` (as the API sends), the real
chat worker's claim, a real ``tether agent`` running the tool, two model steps and the
finish. Its history is not read (the cache adopted the sent message: chatd/historycache.py)
and the send reads no summary (db/chatsummary.py).

What a warm turn may run, and why each is needed:

====================================  ===================================================
send: ``UPDATE chats … RETURNING``    ownership, status, the answer's chat and summary
send: ``INSERT chat_messages``        the user message
claim: ``UPDATE chats … RETURNING``   the worker takes the turn (batched across chats)
``INSERT chat_messages`` × 2          each model response, before its tool runs
``INSERT chat_messages``              the tool results, before the next model request
``INSERT chat_usage``                 the turn's model usage, one row per request
finish: ``UPDATE chats``              the final status, the next queued message promoted
====================================  ===================================================
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from binding_env import BindingEnv, binding_env

from tether.chatd.compaction import longchat_of
from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, script_model

pytestmark = pytest.mark.integration

WARM_TURN_MAX = 8
# Not the turn's: the agents' liveness, noted on their traffic and written for all agents
# together by the ping batcher's flush, at most once a second (workspaces/pings.py).
BACKGROUND = ("UPDATE workspace_agents SET last_connected_at",)
TURN_TIMEOUT_S = 30.0  # a generous ceiling: a turn takes well under a second
EXECUTE = script_model([Call("execute", {"command": "true"}), Say("ok")])


@pytest.fixture
async def quiet_env(tmp_path: Path, db_url: str) -> AsyncIterator[BindingEnv]:
    """The binding env with its background loops (heartbeat, stale sweep, claim poll,
    agent pings, TTL sweep) slowed far past the test's length, so the statements counted
    belong to the turn (but for :data:`BACKGROUND`)."""
    async with binding_env(
        tmp_path,
        db_url=db_url,
        heartbeat_s=60.0,
        stale_after_s=300.0,
        stale_sweep_s=60.0,
        worker_poll_s=60.0,
        agent_ping_interval_s=60.0,
        agent_unreachable_after_s=180.0,
        ttl_sweep_s=60.0,
    ) as running:
        yield running


async def _turn(env: BindingEnv, chat_id: uuid.UUID, text: str) -> list[str]:
    """Send as the API does and wait for the turn's final status on the stream hub (no
    polling of the database); the statements run meanwhile."""
    assert env.counter is not None
    graph = env.graph
    async with graph.hub.subscribe(chat_id) as events:
        with env.counter.measure() as turn:
            sent = await graph.chat_service.send(env.owner, chat_id, text)
            assert sent.message is not None and sent.summary is not None
            async with asyncio.timeout(TURN_TIMEOUT_S):
                while True:
                    ev = await events.get()
                    if ev.event == "status" and ev.data["status"] in ("waiting", "error"):
                        break
    assert ev.data["status"] == "waiting", ev.data
    return [s for s in turn.statements if not s.lstrip().startswith(BACKGROUND)]


def _listing(statements: list[str]) -> str:
    return "\n".join(f"  {' '.join(s.split())[:160]}" for s in statements)


async def test_a_warm_turn_runs_at_most_eight_statements(quiet_env: BindingEnv) -> None:
    env = quiet_env
    ws, _agent = await env.create_workspace()
    await env.pause_provisioner()  # its job poll is not the turn's
    env.start_worker()
    chat = await env.new_chat("turn 1", EXECUTE, workspace_id=ws)
    chat = await env.wait_status(chat.id)  # cold: binds, dials, reads the history
    assert chat.status is ChatStatus.WAITING, chat.last_error
    cache = longchat_of(env.graph).cache
    await _turn(env, chat.id, "turn 2")  # the first turn's own bookkeeping settles
    for i in range(3, 6):
        read_before, adopted_before = cache.rows_read, cache.adopted
        statements = await _turn(env, chat.id, f"turn {i}")
        assert len(statements) <= WARM_TURN_MAX, (
            f"turn {i}: {len(statements)} statements (at most {WARM_TURN_MAX}):\n"
            + _listing(statements)
        )
        assert not [s for s in statements if "'q' AS kind" in s], _listing(statements)
        assert cache.rows_read == read_before, "a warm turn read its history"
        # the user message, two model responses and the tool results
        assert cache.adopted == adopted_before + 4
    # nothing was lost: every turn's messages are in the database, in order
    messages = await env.chats.messages(chat.id)
    assert [m.role for m in messages][-4:] == ["user", "assistant", "tool", "assistant"]
    assert sum(m.role == "user" and m.visibility == "both" for m in messages) == 5
    results = await env.results(chat.id, "execute")
    assert len(results) == 5 and not any(r.get("is_error") for r in results)


async def test_a_message_sent_by_another_process_is_read_not_adopted(
    quiet_env: BindingEnv,
) -> None:
    """A message this process did not publish (written by another replica: here straight
    through the store, which publishes nothing) leaves a gap after the cached history;
    the next turn reads it from the database and the model gets it."""
    env = quiet_env
    ws, _agent = await env.create_workspace()
    await env.pause_provisioner()
    env.start_worker()
    seen: list[list[str]] = []

    def remember(messages: list[Any], _info: Any) -> None:
        texts = []
        for m in messages:
            for part in getattr(m, "parts", ()):
                content = getattr(part, "content", None)
                if isinstance(content, str):
                    texts.append(content)
        seen.append(texts)

    model = script_model([Call("execute", {"command": "true"}), Say("ok")], on_request=remember)
    chat = await env.new_chat("turn 1", model, workspace_id=ws)
    chat = await env.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    cache = longchat_of(env.graph).cache
    read_before = cache.rows_read
    await env.send(chat.id, "from elsewhere")  # the store alone: no hub publication
    chat = await env.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    assert cache.rows_read == read_before + 1  # the gap was read
    assert "from elsewhere" in seen[-1]
