"""The real implementations of the binding seams: :class:`StoreBinding` (the
:class:`~tether.chatd.binding.resolver.BindingStore` over the database stores) and
:class:`AgentDialer` (the :class:`~tether.chatd.binding.conncache.Dialer` over the one agent
client cache, :mod:`tether.agentconn.clients`), which fails at once for an agent whose
session went silent (:mod:`tether.agentconn.liveness`)."""

from __future__ import annotations

import uuid

from tether.agentconn.client import AgentClient
from tether.agentconn.clients import AgentClients
from tether.agentconn.liveness import AgentLiveness
from tether.chatd.binding.types import AgentRow, ChatBinding
from tether.db.agents import AgentStore
from tether.db.chats import ChatStore
from tether.domain.chat import Chat
from tether.errors import AgentTransportError
from tether.observability.logs import bind_log_ids
from tether.observability.metrics import Metrics


def binding_of(chat: Chat) -> ChatBinding:
    """The binding columns of a chat row."""
    return ChatBinding(
        chat_id=chat.id,
        workspace_id=chat.workspace_id,
        build_id=chat.build_id,
        agent_id=chat.agent_id,
        parent_chat_id=chat.parent_chat_id,
        root_chat_id=chat.root_chat_id,
    )


class StoreBinding:
    """:class:`~tether.chatd.binding.resolver.BindingStore` backed by the chat and agent stores."""

    def __init__(
        self, chats: ChatStore, agents: AgentStore, *, metrics: Metrics | None = None
    ) -> None:
        self._chats = chats
        self._agents = agents
        self._metrics = metrics

    async def get_agent(self, agent_id: uuid.UUID) -> AgentRow | None:
        return await self._agents.find(agent_id)

    async def latest_build_agents(self, workspace_id: uuid.UUID) -> list[AgentRow]:
        return await self._agents.latest_build_agents(workspace_id)

    async def get_chat_binding(self, chat_id: uuid.UUID) -> ChatBinding:
        return binding_of(await self._chats.get(chat_id))

    async def update_build_agent_binding(
        self,
        chat_id: uuid.UUID,
        *,
        workspace_id: uuid.UUID,
        build_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> ChatBinding:
        # One guarded UPDATE: a concurrent re-bind must not be overwritten with an agent of
        # the old workspace (Conflict); a chat that is gone is NotFound.
        updated = await self._chats.update_build_agent_binding_if(
            chat_id, workspace_id=workspace_id, build_id=build_id, agent_id=agent_id
        )
        if self._metrics is not None:
            self._metrics.binding_repaired()
        bind_log_ids(workspace_id=workspace_id, build_id=build_id, agent_id=agent_id)
        return binding_of(updated)


class AgentDialer:
    """Dials an agent row's ``dial_address`` with its ``dial_secret``; the returned
    :class:`~tether.agentconn.client.AgentClient` is a handle on the shared client of that
    agent (``clients``) that carries ``headers`` on every request. Closing it gives the
    client back; it never closes a client another chat or the API proxy holds.

    Without ``clients`` the dialer keeps its own cache that keeps no idle client (a handle
    given back by its last holder is closed at once), for callers with no graph."""

    def __init__(
        self,
        *,
        connect_timeout: float | None = None,
        request_timeout: float | None = None,
        exec_margin: float = 5.0,
        liveness: AgentLiveness | None = None,
        clients: AgentClients | None = None,
    ) -> None:
        if clients is None:
            if connect_timeout is None or request_timeout is None:
                raise TypeError("AgentDialer needs clients or both timeouts")
            clients = AgentClients(
                connect_timeout=connect_timeout,
                request_timeout=request_timeout,
                exec_margin=exec_margin,
                liveness=liveness,
                max_idle=0,
            )
        self.clients = clients

    async def dial(self, agent: AgentRow, *, headers: dict[str, str]) -> AgentClient:
        if not agent.dial_address or not agent.dial_secret:
            raise AgentTransportError(f"agent {agent.name!r} has not reported a dial address yet")
        liveness = self.clients.liveness
        if liveness is not None and liveness.is_down(agent.id):
            # Its session went silent: a health check would only wait for the deadline.
            raise AgentTransportError(liveness.reason(agent.id), sent=False)
        return await self.clients.dial(
            agent.id, agent.dial_address, agent.dial_secret, headers=headers
        )
