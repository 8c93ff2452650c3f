"""The one agent-client cache against a real ``tether agent``: chats share a client with
their own headers, and one chat giving its handle back leaves the others working."""

from __future__ import annotations

import json
import uuid

import pytest

from support.agent_procs import RunningAgent
from tether.agentconn.clients import AgentClients
from tether.chatd.binding import ANCESTOR_CHAT_IDS_HEADER, CHAT_ID_HEADER
from tether.errors import AgentRequestFailed

pytestmark = pytest.mark.integration

AGENT = uuid.UUID(int=7)


def chat_headers(chat: str, parent: str | None = None) -> dict[str, str]:
    return {CHAT_ID_HEADER: chat, ANCESTOR_CHAT_IDS_HEADER: json.dumps([parent] if parent else [])}


async def test_two_chats_share_one_client_each_with_its_own_headers(agent: RunningAgent) -> None:
    clients = AgentClients(connect_timeout=1.0, request_timeout=5.0, max_idle=0)
    try:
        root = await clients.dial(AGENT, agent.address, agent.secret, headers=chat_headers("c-1"))
        child = await clients.dial(
            AGENT, agent.address, agent.secret, headers=chat_headers("c-2", "c-1")
        )
        assert clients.open_clients == 1
        assert (await root.exec("true")).exit_code == 0
        assert (await child.exec("true")).exit_code == 0
        await root.aclose()  # the root chat's binding is evicted …
        assert (await child.exec("echo still")).output.strip() == "still"  # … the child's works
        await child.aclose()
        await clients.closes_done()
        assert clients.open_clients == 0
    finally:
        await clients.aclose()
    log = agent.stderr()
    assert "chat=c-1 ancestors=[]" in log
    assert 'chat=c-2 ancestors=["c-1"]' in log


async def test_a_caller_with_another_secret_never_gets_the_authenticated_client(
    agent: RunningAgent,
) -> None:
    """The cache key holds the secret's generation: a caller presenting a wrong (or old)
    secret for the same agent and address gets a client of its own, which the agent
    refuses, and the holder of the right one keeps working."""
    clients = AgentClients(connect_timeout=1.0, request_timeout=5.0)
    try:
        good = await clients.dial(AGENT, agent.address, agent.secret)
        with pytest.raises(AgentRequestFailed) as info:
            await clients.dial(AGENT, agent.address, "not-the-secret")
        assert info.value.status == 401
        assert (await good.exec("true")).exit_code == 0
        await good.aclose()
    finally:
        await clients.aclose()
