"""The BindingStore contract (``tether.chatd.binding.BindingStore``), run against the fake
(``FakeBindingStore``) and the real one (``StoreBinding`` over SQLite and PostgreSQL).

What every implementation promises:

* ``get_agent``: the row (id, workspace, build, name, chat flag), or None for an unknown id;
* ``latest_build_agents``: the agents of the latest build — only the new ones after a
  rebuild, none after a stop (old rows stay readable by id), none for an unknown workspace;
* ``get_chat_binding``: the binding columns; ``NotFound`` for an unknown chat;
* ``update_build_agent_binding``: writes build and agent together while the chat is still
  bound to the given workspace; ``Conflict`` (and nothing written) once it was re-bound;
  ``NotFound`` for an unknown chat.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Protocol

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.chatd.binding import AgentRow, BindingStore, ChatBinding, StoreBinding
from tether.clock import SystemClock
from tether.db.agents import AgentStore, NewAgent
from tether.db.chats import ChatStore
from tether.db.templates import TemplateStore
from tether.db.users import UserStore
from tether.db.workspaces import BuildRequest, WorkspaceStore
from tether.domain.workspace import Transition
from tether.errors import Conflict, NotFound
from tether.testing.fake_binding_store import FakeBindingStore, agent_row

AGENTS = [("main", 0, True), ("sidecar", 1, False)]


class World(Protocol):
    """Set-up operations: the contract is about the store, these only build the data."""

    store: BindingStore

    async def running_workspace(self) -> tuple[uuid.UUID, list[AgentRow]]: ...

    async def rebuild(self, workspace_id: uuid.UUID) -> list[AgentRow]: ...

    async def stop(self, workspace_id: uuid.UUID) -> None: ...

    async def chat(self, binding: ChatBinding) -> uuid.UUID: ...

    async def rebind(self, chat_id: uuid.UUID, workspace_id: uuid.UUID) -> None: ...


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeBindingStore()
        self.store: BindingStore = self.fake

    async def running_workspace(self) -> tuple[uuid.UUID, list[AgentRow]]:
        ws = uuid.uuid4()
        return ws, await self.rebuild(ws)

    async def rebuild(self, workspace_id: uuid.UUID) -> list[AgentRow]:
        build = uuid.uuid4()
        rows = [
            agent_row(workspace_id, build, name=n, display_order=o, chat=c) for n, o, c in AGENTS
        ]
        self.fake.add_latest(workspace_id, *rows)
        return rows

    async def stop(self, workspace_id: uuid.UUID) -> None:
        self.fake.stop(workspace_id)

    async def chat(self, binding: ChatBinding) -> uuid.UUID:
        chat_id = uuid.uuid4()
        self.fake.add_chat(replace(binding, chat_id=chat_id))
        return chat_id

    async def rebind(self, chat_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
        self.fake.chats[chat_id] = replace(
            self.fake.chats[chat_id], workspace_id=workspace_id, build_id=None, agent_id=None
        )


class DbWorld:
    def __init__(self, engine: AsyncEngine) -> None:
        clock = SystemClock()
        self.users, self.templates = UserStore(engine, clock), TemplateStore(engine, clock)
        self.workspaces, self.agents = WorkspaceStore(engine, clock), AgentStore(engine, clock)
        self.chats = ChatStore(engine, clock)
        self.store = StoreBinding(self.chats, self.agents)
        self._n = 0

    async def setup(self) -> None:
        self.owner = await self.users.create_user("contract", "member")
        spec = {"name": "py", "agents": [{"name": n, "order": o, "chat": c} for n, o, c in AGENTS]}
        self.template, self.version = await self.templates.push(
            spec=spec, source="name: py", user_id=self.owner.id
        )

    def _request(self, workspace_id: uuid.UUID | None, transition: Transition) -> BuildRequest:
        return BuildRequest(
            workspace_id=workspace_id,  # type: ignore[arg-type]
            transition=transition,
            template_version_id=self.version.id,
            parameters={},
            initiator_id=self.owner.id,
        )

    async def _run(self, workspace_id: uuid.UUID, transition: Transition) -> uuid.UUID:
        build, _ = await self.workspaces.create_build(self._request(workspace_id, transition))
        await self.workspaces.claim_job(self.owner.id)
        await self.workspaces.finish_job(build.job_id)
        return build.id

    async def _agents_for(self, workspace_id: uuid.UUID, build_id: uuid.UUID) -> list[AgentRow]:
        created = await self.agents.create_for_build(
            build_id=build_id,
            workspace_id=workspace_id,
            agents=[NewAgent(n, o, c) for n, o, c in AGENTS],
            connection_timeout_s=120,
        )
        return [a for a, _ in created]

    async def running_workspace(self) -> tuple[uuid.UUID, list[AgentRow]]:
        self._n += 1
        ws, build = await self.workspaces.create(
            owner_id=self.owner.id,
            template_id=self.template.id,
            name=f"w{self._n}",
            ttl_ms=None,
            first_build=self._request(None, Transition.START),
        )
        assert build is not None
        await self.workspaces.claim_job(self.owner.id)
        await self.workspaces.finish_job(build.job_id)
        return ws.id, await self._agents_for(ws.id, build.id)

    async def rebuild(self, workspace_id: uuid.UUID) -> list[AgentRow]:
        old = await self.workspaces.latest_build(workspace_id)
        await self._run(workspace_id, Transition.STOP)
        assert old is not None
        await self.agents.set_build_off(old.id)
        build_id = await self._run(workspace_id, Transition.START)
        return await self._agents_for(workspace_id, build_id)

    async def stop(self, workspace_id: uuid.UUID) -> None:
        old = await self.workspaces.latest_build(workspace_id)
        await self._run(workspace_id, Transition.STOP)
        assert old is not None
        await self.agents.set_build_off(old.id)

    async def chat(self, binding: ChatBinding) -> uuid.UUID:
        chat = await self.chats.create(
            owner_id=self.owner.id,
            title="c",
            first_message=None,
            workspace_id=binding.workspace_id,
            build_id=binding.build_id,
            agent_id=binding.agent_id,
        )
        return chat.id

    async def rebind(self, chat_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
        await self.chats.update_workspace_binding(chat_id, workspace_id=workspace_id, build_id=None)


def _blank(chat_id: uuid.UUID | None = None) -> ChatBinding:
    return ChatBinding(chat_id=chat_id or uuid.uuid4(), workspace_id=None)


class BindingStoreContract:
    """The contract; subclasses provide the ``world`` fixture."""

    async def test_get_agent_returns_the_row_or_none(self, world: World) -> None:
        ws, agents = await world.running_workspace()
        main = agents[0]
        row = await world.store.get_agent(main.id)
        assert row is not None
        assert (row.id, row.workspace_id, row.build_id, row.name, row.chat) == (
            main.id,
            ws,
            main.build_id,
            "main",
            True,
        )
        assert await world.store.get_agent(uuid.uuid4()) is None

    async def test_latest_build_agents_follow_rebuild_and_stop(self, world: World) -> None:
        ws, first = await world.running_workspace()
        latest = await world.store.latest_build_agents(ws)
        assert [a.id for a in latest] == [a.id for a in first]
        assert {a.build_id for a in latest} == {first[0].build_id}

        second = await world.rebuild(ws)
        latest = await world.store.latest_build_agents(ws)
        assert [a.id for a in latest] == [a.id for a in second]
        assert not {a.id for a in latest} & {a.id for a in first}  # new ids per build
        assert await world.store.get_agent(first[0].id) is not None  # old rows stay readable

        await world.stop(ws)
        assert await world.store.latest_build_agents(ws) == []
        assert await world.store.get_agent(second[0].id) is not None
        assert await world.store.latest_build_agents(uuid.uuid4()) == []

    async def test_get_chat_binding(self, world: World) -> None:
        ws, agents = await world.running_workspace()
        main = agents[0]
        bound = await world.chat(
            ChatBinding(uuid.uuid4(), ws, build_id=main.build_id, agent_id=main.id)
        )
        binding = await world.store.get_chat_binding(bound)
        assert (binding.chat_id, binding.workspace_id, binding.build_id, binding.agent_id) == (
            bound,
            ws,
            main.build_id,
            main.id,
        )
        unbound = await world.chat(_blank())
        binding = await world.store.get_chat_binding(unbound)
        assert (binding.workspace_id, binding.build_id, binding.agent_id) == (None, None, None)
        with pytest.raises(NotFound):
            await world.store.get_chat_binding(uuid.uuid4())

    async def test_update_build_agent_binding_writes_both_columns(self, world: World) -> None:
        ws, first = await world.running_workspace()
        chat = await world.chat(ChatBinding(uuid.uuid4(), ws))
        updated = await world.store.update_build_agent_binding(
            chat, workspace_id=ws, build_id=first[0].build_id, agent_id=first[0].id
        )
        assert (updated.chat_id, updated.workspace_id) == (chat, ws)
        assert (updated.build_id, updated.agent_id) == (first[0].build_id, first[0].id)
        assert await world.store.get_chat_binding(chat) == updated
        # a repair after a rebuild rewrites both together
        second = await world.rebuild(ws)
        updated = await world.store.update_build_agent_binding(
            chat, workspace_id=ws, build_id=second[0].build_id, agent_id=second[0].id
        )
        assert (updated.build_id, updated.agent_id) == (second[0].build_id, second[0].id)
        assert await world.store.get_chat_binding(chat) == updated

    async def test_update_after_rebind_is_a_conflict_and_writes_nothing(self, world: World) -> None:
        ws, agents = await world.running_workspace()
        other, _ = await world.running_workspace()
        chat = await world.chat(ChatBinding(uuid.uuid4(), ws))
        await world.rebind(chat, other)
        with pytest.raises(Conflict):
            await world.store.update_build_agent_binding(
                chat, workspace_id=ws, build_id=agents[0].build_id, agent_id=agents[0].id
            )
        binding = await world.store.get_chat_binding(chat)
        assert (binding.workspace_id, binding.build_id, binding.agent_id) == (other, None, None)

    async def test_update_of_unknown_chat_is_not_found(self, world: World) -> None:
        ws, agents = await world.running_workspace()
        with pytest.raises(NotFound):
            await world.store.update_build_agent_binding(
                uuid.uuid4(), workspace_id=ws, build_id=agents[0].build_id, agent_id=agents[0].id
            )


class TestFakeBindingStore(BindingStoreContract):
    @pytest.fixture
    def world(self) -> World:
        return FakeWorld()


class TestStoreBinding(BindingStoreContract):
    @pytest.fixture
    async def world(self, engine: AsyncEngine) -> AsyncIterator[World]:  # SQLite and PostgreSQL
        db = DbWorld(engine)
        await db.setup()
        yield db
