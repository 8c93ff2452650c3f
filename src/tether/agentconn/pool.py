"""Keep-alive HTTP clients to agents, one per agent id, for server-side callers that are
not chats (the API's exec/file proxy). Chats use their own per-chat connection cache."""

from __future__ import annotations

import asyncio
import uuid

from tether.agentconn.client import AgentClient
from tether.agentconn.liveness import AgentLiveness


class AgentPool:
    """With ``liveness``, requests to an agent whose session goes silent fail at once
    (:mod:`tether.agentconn.liveness`) and its client is replaced on the next ``get``."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        request_timeout: float,
        exec_margin: float = 5.0,
        liveness: AgentLiveness | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._exec_margin = exec_margin
        self._liveness = liveness
        self._clients: dict[uuid.UUID, tuple[str, str, AgentClient]] = {}
        self._lock = asyncio.Lock()

    async def get(self, agent_id: uuid.UUID, address: str, secret: str) -> AgentClient:
        async with self._lock:
            entry = self._clients.get(agent_id)
            if (
                entry is not None
                and entry[0] == address
                and entry[1] == secret
                and not entry[2].is_down
            ):
                return entry[2]
            if entry is not None:
                await entry[2].aclose()
            client = AgentClient(
                address,
                secret,
                connect_timeout=self._connect_timeout,
                request_timeout=self._request_timeout,
                exec_margin=self._exec_margin,
                down=self._liveness.signal(agent_id) if self._liveness is not None else None,
            )
            self._clients[agent_id] = (address, secret, client)
            return client

    async def evict(self, agent_id: uuid.UUID) -> None:
        async with self._lock:
            entry = self._clients.pop(agent_id, None)
        if entry is not None:
            await entry[2].aclose()

    async def aclose(self) -> None:
        async with self._lock:
            entries, self._clients = list(self._clients.values()), {}
        for _, _, client in entries:
            await client.aclose()
