"""An in-memory :class:`tether.chatd.binding.BindingStore` that records every query.

Tests assert on ``store.queries`` (``[(method, args), …]`` in call order) to pin how many
reads a path costs, inject errors with :meth:`FakeBindingStore.fail`, and run code "in the
middle" of a query with :meth:`FakeBindingStore.before` (e.g. a tool re-binding the chat)::

    store = FakeBindingStore()
    ws, build = uuid4(), uuid4()
    main = store.add_latest(ws, agent_row(ws, build, name="main"))
    store.add_chat(ChatBinding(chat_id, ws))
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from tether.chatd.binding import AgentRow, ChatBinding
from tether.domain.agent import Lifecycle
from tether.errors import Conflict, NotFound
from tether.testing.clock import DEFAULT_START

Hook = Callable[[], Awaitable[None]]


def agent_row(
    workspace_id: uuid.UUID,
    build_id: uuid.UUID,
    *,
    name: str = "main",
    agent_id: uuid.UUID | None = None,
    chat: bool = False,
    display_order: int = 0,
    parent_id: uuid.UUID | None = None,
    now: datetime = DEFAULT_START,
    connected: bool = True,
    created_ago_s: float = 300.0,
    last_ping_ago_s: float = 0.0,
    disconnected_ago_s: float | None = None,
    connection_timeout_s: int = 120,
) -> AgentRow:
    """A workspace agent row with convenient defaults: connected 5 min ago, pinging now."""
    created = now - timedelta(seconds=created_ago_s)
    return AgentRow(
        id=agent_id or uuid.uuid4(),
        build_id=build_id,
        workspace_id=workspace_id,
        name=name,
        display_order=display_order,
        chat=chat,
        parent_id=parent_id,
        created_at=created,
        first_connected_at=created if connected else None,
        last_connected_at=now - timedelta(seconds=last_ping_ago_s) if connected else None,
        disconnected_at=(
            now - timedelta(seconds=disconnected_ago_s) if disconnected_ago_s is not None else None
        ),
        connection_timeout_s=connection_timeout_s,
        lifecycle_state=Lifecycle.READY if connected else Lifecycle.CREATED,
        lifecycle_changed_at=created,
        dial_address=f"http://127.0.0.1:0/{name}",
        dial_secret="secret",
    )


class FakeBindingStore:
    """Agents, latest builds and chat bindings in dictionaries; every call recorded."""

    def __init__(self) -> None:
        self.agents: dict[uuid.UUID, AgentRow] = {}
        self.latest: dict[uuid.UUID, list[uuid.UUID]] = {}  # workspace → latest build's agents
        self.chats: dict[uuid.UUID, ChatBinding] = {}
        self.queries: list[tuple[str, tuple[Any, ...]]] = []
        self._errors: dict[str, list[Exception | None]] = {}
        self._sticky_errors: dict[str, Exception] = {}
        self._hooks: dict[str, list[Hook]] = {}

    # --- set-up --------------------------------------------------------------------------

    def add_agent(self, row: AgentRow) -> AgentRow:
        """Store an agent row without making it part of any latest build."""
        self.agents[row.id] = row
        return row

    def add_latest(self, workspace_id: uuid.UUID, *rows: AgentRow) -> AgentRow | None:
        """Make ``rows`` the agents of the workspace's latest build (none = stopped).
        Returns the first row, for convenience."""
        for row in rows:
            self.agents[row.id] = row
        self.latest[workspace_id] = [r.id for r in rows]
        return rows[0] if rows else None

    def stop(self, workspace_id: uuid.UUID) -> None:
        """The latest build is now a stop build: no agents (old rows stay readable)."""
        self.latest[workspace_id] = []

    def remove_agent(self, agent_id: uuid.UUID) -> None:
        self.agents.pop(agent_id, None)

    def add_chat(self, binding: ChatBinding) -> ChatBinding:
        self.chats[binding.chat_id] = binding
        return binding

    def fail(self, method: str, error: Exception, *, times: int | None = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error`` (None: every call)."""
        if times is None:
            self._sticky_errors[method] = error
        else:
            self._errors.setdefault(method, []).extend([error] * times)

    def clear_failures(self) -> None:
        self._errors.clear()
        self._sticky_errors.clear()

    def before(self, method: str, hook: Hook) -> None:
        """Run ``hook`` (once) at the start of the next call of ``method``, after it is
        recorded: an await point where a test can change the world."""
        self._hooks.setdefault(method, []).append(hook)

    @property
    def query_names(self) -> list[str]:
        return [name for name, _ in self.queries]

    def reset_queries(self) -> None:
        self.queries.clear()

    # --- BindingStore --------------------------------------------------------------------

    async def _enter(self, method: str, *args: Any) -> None:
        self.queries.append((method, args))
        hooks = self._hooks.get(method)
        if hooks:
            await hooks.pop(0)()
        if method in self._sticky_errors:
            raise self._sticky_errors[method]
        queued = self._errors.get(method)
        if queued:
            error = queued.pop(0)
            if error is not None:
                raise error

    async def get_agent(self, agent_id: uuid.UUID) -> AgentRow | None:
        await self._enter("get_agent", agent_id)
        return self.agents.get(agent_id)

    async def latest_build_agents(self, workspace_id: uuid.UUID) -> list[AgentRow]:
        await self._enter("latest_build_agents", workspace_id)
        return [self.agents[a] for a in self.latest.get(workspace_id, []) if a in self.agents]

    async def get_chat_binding(self, chat_id: uuid.UUID) -> ChatBinding:
        await self._enter("get_chat_binding", chat_id)
        try:
            return self.chats[chat_id]
        except KeyError:
            raise NotFound(f"chat {chat_id} not found") from None

    async def update_build_agent_binding(
        self,
        chat_id: uuid.UUID,
        *,
        workspace_id: uuid.UUID,
        build_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> ChatBinding:
        await self._enter("update_build_agent_binding", chat_id, workspace_id, build_id, agent_id)
        current = self.chats.get(chat_id)
        if current is None:
            raise NotFound(f"chat {chat_id} not found")
        if current.workspace_id != workspace_id:
            raise Conflict("the chat is bound to another workspace")
        updated = replace(current, build_id=build_id, agent_id=agent_id)
        self.chats[chat_id] = updated
        return updated
