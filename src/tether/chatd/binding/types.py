"""Small types shared by the chat→workspace binding modules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Protocol, TypeAlias

from tether.domain.agent import WorkspaceAgent

# The agent row chatd reads. It is the workspace domain type itself (id, build_id,
# workspace_id, name, display_order, chat, parent_id, timestamps, connection_timeout_s,
# lifecycle_state, dial_address, dial_secret, os, directory), so stores return one type.
AgentRow: TypeAlias = WorkspaceAgent


@dataclass(frozen=True)
class ChatBinding:
    """The binding columns of a chat row.

    ``workspace_id`` is authoritative; ``(build_id, agent_id)`` is an optimistic cache of
    which agent to dial and is always written together (the agent belongs to that build).
    """

    chat_id: uuid.UUID
    workspace_id: uuid.UUID | None
    build_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    parent_chat_id: uuid.UUID | None = None
    root_chat_id: uuid.UUID | None = None

    def with_agent(self, build_id: uuid.UUID, agent_id: uuid.UUID) -> ChatBinding:
        return replace(self, build_id=build_id, agent_id=agent_id)


class Conn(Protocol):
    """A connection to a workspace agent. Closing it is the only thing chatd's binding
    code needs; tools use the concrete client (``tether.agentconn``)."""

    async def aclose(self) -> None: ...
