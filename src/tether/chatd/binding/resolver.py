"""Resolving which agent a chat talks to (docs/behaviour.md §4.2–§4.3).

A chat's binding is ``workspace_id`` (authoritative) plus ``(build_id, agent_id)``, an
optimistic cache of which agent to dial. :class:`AgentResolver` keeps the chat's binding
snapshot and the resolved agent row for one chat:

* **binding-first**: a bound ``agent_id`` whose row exists is used as is — one query, no
  look at the latest build (staleness is found later by the lazy-validation dial);
* **lazy bind / repair**: no agent bound, or its row is gone or unreadable → pick the chat
  agent of the latest build and persist ``build_id`` + ``agent_id`` together;
* the latest build has no agent → :class:`WorkspaceStopped`; no workspace →
  :class:`NoWorkspace`.

tether differences: the agent row carries its ``build_id``, so binding costs two queries
(latest agents, guarded update) where upstream used three (it also read the latest build);
and the binding write is guarded by the workspace id, so a concurrent re-bind shows up as a
:class:`~tether.errors.Conflict` instead of silently pairing an agent with the wrong
workspace.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from tether.chatd.binding.agentselect import select_chat_agent
from tether.chatd.binding.types import AgentRow, ChatBinding
from tether.errors import (
    Conflict,
    NoRunningAgent,
    NoWorkspace,
    TetherError,
    WorkspaceChanged,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


class BindingStore(Protocol):
    """The queries agent resolution makes (implemented by the DB layer and by
    :class:`tether.testing.fake_binding_store.FakeBindingStore`)."""

    async def get_agent(self, agent_id: uuid.UUID) -> AgentRow | None:
        """The agent row, or None if it no longer exists."""
        ...

    async def latest_build_agents(self, workspace_id: uuid.UUID) -> list[AgentRow]:
        """All agents of the workspace's latest build (empty when it is stopped, failed,
        deleted or has no build)."""
        ...

    async def get_chat_binding(self, chat_id: uuid.UUID) -> ChatBinding:
        """The chat's current binding columns."""
        ...

    async def update_build_agent_binding(
        self,
        chat_id: uuid.UUID,
        *,
        workspace_id: uuid.UUID,
        build_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> ChatBinding:
        """Write ``build_id`` and ``agent_id`` together, only if the chat is still bound to
        ``workspace_id``; otherwise raise :class:`tether.errors.Conflict`. Returns the
        updated binding."""
        ...


class AgentResolver:
    """The chat's binding snapshot plus the agent resolved for it (one chat, one worker).

    The snapshot is replaced by :meth:`reset` when a tool binds a new workspace; the cached
    agent is only trusted while the snapshot still names the workspace it was resolved for.
    """

    def __init__(self, binding: ChatBinding, store: BindingStore) -> None:
        self._snapshot = binding
        self._store = store
        self._agent: AgentRow | None = None
        self._agent_workspace_id: uuid.UUID | None = None
        self._generation = 0
        # Pre-LLM steps (instructions, MCP discovery) resolve in parallel: without this they
        # would both lazily bind, i.e. two latest-build reads and two binding writes.
        self._resolving = asyncio.Lock()

    @property
    def snapshot(self) -> ChatBinding:
        return self._snapshot

    @property
    def cached_agent(self) -> AgentRow | None:
        return self._agent

    @property
    def cached_workspace_id(self) -> uuid.UUID | None:
        return self._agent_workspace_id

    @property
    def generation(self) -> int:
        """Bumped by every :meth:`reset` and :meth:`clear`; lets a caller that awaited
        something tell whether the state it started from is still current."""
        return self._generation

    def reset(self, binding: ChatBinding) -> None:
        """Adopt a new binding snapshot (a tool bound a workspace) and forget the agent."""
        self._snapshot = binding
        self.clear()

    def clear(self) -> None:
        """Forget the resolved agent (the snapshot stays)."""
        self._agent = None
        self._agent_workspace_id = None
        self._generation += 1

    async def refresh_snapshot(self) -> ChatBinding:
        """The snapshot, re-read from the store only when it names no workspace.

        Raises :class:`TetherError` ("reload chat workspace state: …") when the re-read
        fails; the snapshot is then left as it was.
        """
        if self._snapshot.workspace_id is not None:
            return self._snapshot
        try:
            reloaded = await self._store.get_chat_binding(self._snapshot.chat_id)
        except Exception as err:
            raise TetherError(f"reload chat workspace state: {err}") from err
        self._snapshot = reloaded
        return reloaded

    async def ensure_workspace_agent(self) -> AgentRow:
        """The agent to dial for the current snapshot (docs/behaviour.md §4.2).

        Cached agent for the same workspace → no query. Else at most two attempts of
        binding-first lookup, then lazy bind / repair. Raises :class:`NoWorkspace`,
        :class:`WorkspaceStopped`, :class:`AgentSelectionError`, store errors, or
        :class:`WorkspaceChanged` when the chat was re-bound during both attempts.
        """
        if self._agent is not None and self._agent_workspace_id == self._snapshot.workspace_id:
            return self._agent
        async with self._resolving:  # single flight: a concurrent caller's result is reused
            for _ in range(MAX_ATTEMPTS):
                if (
                    self._agent is not None
                    and self._agent_workspace_id == self._snapshot.workspace_id
                ):
                    return self._agent
                agent = await self._resolve_once()
                if agent is not None:
                    return agent
        raise WorkspaceChanged("chat workspace changed while resolving agent")

    async def _resolve_once(self) -> AgentRow | None:
        """One attempt; None means "re-bound meanwhile, try again"."""
        generation = self._generation
        snapshot = await self.refresh_snapshot()
        workspace_id = snapshot.workspace_id
        if workspace_id is None:
            raise NoWorkspace()
        if snapshot.agent_id is not None:
            try:
                row = await self._store.get_agent(snapshot.agent_id)
            except Exception as err:
                # Transient or not, the latest build can still tell us what to dial.
                log.warning("reading bound agent %s failed: %s", snapshot.agent_id, err)
                row = None
            if row is not None and row.workspace_id == workspace_id:
                if generation != self._generation:
                    return None
                self._remember(row, workspace_id)
                return row
        agent = select_chat_agent(await self._store.latest_build_agents(workspace_id))
        if generation != self._generation:
            return None
        try:
            updated = await self._persist(agent, workspace_id)
        except Conflict:
            # The chat row was re-bound by someone else: read it again and retry.
            self._snapshot = await self._store.get_chat_binding(snapshot.chat_id)
            self.clear()
            return None
        return updated

    async def _persist(self, agent: AgentRow, workspace_id: uuid.UUID) -> AgentRow | None:
        generation = self._generation
        updated = await self._store.update_build_agent_binding(
            self._snapshot.chat_id,
            workspace_id=workspace_id,
            build_id=agent.build_id,
            agent_id=agent.id,
        )
        if generation != self._generation:
            return None  # a tool re-bound the chat while we wrote; its snapshot wins
        self._snapshot = updated
        self._remember(agent, workspace_id)
        return agent

    async def adopt_switched_agent(self, agent: AgentRow) -> bool:
        """Persist a binding switch found by the lazy-validation dial and cache ``agent``.

        Returns False when the chat was re-bound meanwhile (the write was refused by the
        store's workspace guard, or a tool replaced the snapshot during the write).
        """
        try:
            return await self._persist(agent, agent.workspace_id) is not None
        except Conflict:
            return False

    async def latest_agent(self, workspace_id: uuid.UUID) -> AgentRow:
        """The chat agent of the latest build (docs/behaviour.md §4.5): the validation step.
        Raises :class:`WorkspaceStopped` when the latest build has no agent."""
        return select_chat_agent(await self._store.latest_build_agents(workspace_id))

    def _remember(self, agent: AgentRow, workspace_id: uuid.UUID) -> None:
        self._agent = agent
        self._agent_workspace_id = workspace_id


async def gate_agent(
    resolver: AgentResolver, *, on_no_agent: Callable[[], None] | None = None
) -> AgentRow:
    """The pre-dial gate for pre-LLM steps (docs/behaviour.md §4.3).

    Without a full binding, resolve the agent (may bind lazily). With one, check the latest
    build and return its chat agent (it may differ from the binding: the chat's next dial
    goes to it, and the dial repairs the binding). On :class:`WorkspaceStopped`,
    ``on_no_agent`` runs (to drop cached state) and the error propagates; callers skip
    their step quietly on it.
    """
    snapshot = resolver.snapshot
    if snapshot.workspace_id is None or snapshot.agent_id is None:
        return await resolver.ensure_workspace_agent()
    try:
        return await resolver.latest_agent(snapshot.workspace_id)
    except NoRunningAgent:
        if on_no_agent is not None:
            on_no_agent()
        raise
