"""Helpers for chat-daemon integration tests (real server, real agents, the real
worker): imported by the tests and by this folder's conftest."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic_ai.models import Model
from sqlalchemy.ext.asyncio import AsyncEngine

from support.chat_driver import ChatDriver
from support.dialers import CountingDialer
from support.server import RunningServer
from tether.chatd.binding import AgentRow
from tether.chatd.install import install_chatd
from tether.chatd.stream import StreamEvent
from tether.chatd.worker import ChatWorker
from tether.db.tables import provisioner_jobs, workspace_agents
from tether.domain.agent import Lifecycle
from tether.domain.chat import Chat, StoredMessage
from tether.domain.user import User
from tether.domain.workspace import Build, Transition, Workspace
from tether.llm.scripted import script_model
from tether.workspaces.backends.base import AgentLaunch, LogSink, WorkspaceRef, WorkspaceRuntime
from tether.workspaces.template_parse import parse_template, spec_to_json

REPO = Path(__file__).resolve().parents[3]
PYTHON_TEMPLATE = REPO / "examples" / "templates" / "python.yaml"


class InertBackend:
    """A workspace backend that runs nothing: its builds succeed at once and no agent ever
    connects (the rows stay ``created``). With ``drop_agents`` it also deletes the build's
    agent rows, giving a successful build *without agents*: tether's template schema
    requires at least one agent (``agents: []`` is rejected), so this is how tests reach
    the "template without agents" rows of docs/behaviour.md §9 (CW-13, CW-21, SW-4)."""

    def __init__(self, name: str, engine: AsyncEngine, *, drop_agents: bool = False) -> None:
        self.name = name
        self._engine = engine
        self._drop = drop_agents

    async def start(self, ws: WorkspaceRef, agents: list[AgentLaunch], log: LogSink) -> None:
        if self._drop and agents:
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.delete(workspace_agents).where(
                        workspace_agents.c.id.in_([a.agent_id for a in agents])
                    )
                )
        await log("info", f"inert backend: {len(agents)} agent(s) not launched")

    async def stop(self, ws: WorkspaceRef, log: LogSink) -> None:
        return None

    async def delete(self, ws: WorkspaceRef, log: LogSink) -> None:
        return None

    async def inspect(self, ws: WorkspaceRef) -> WorkspaceRuntime:
        return WorkspaceRuntime(running=False)


def template_source(name: str, *, backend: str = "local", agents: str | None = None) -> str:
    """The python example template renamed to ``name``, on ``backend``, optionally with
    another ``agents:`` block (YAML flow list)."""
    source = PYTHON_TEMPLATE.read_text()
    source = source.replace("name: python\n", f"name: {name}\n", 1)
    source = source.replace("backend: local", f"backend: {backend}", 1)
    if agents is not None:
        head, _, tail = source.partition("agents:\n")
        tail = tail.split("connection_timeout_s:", 1)[1]
        source = f"{head}agents: {agents}\nconnection_timeout_s:{tail}"
    return source


@dataclass
class Chatd(ChatDriver):
    server: RunningServer
    owner: User
    template_id: uuid.UUID
    dialer: CountingDialer
    models: dict[uuid.UUID, Model] = field(default_factory=dict)
    child_models: dict[uuid.UUID, Model] = field(default_factory=dict)  # by parent id
    default_model: Model = field(default_factory=lambda: script_model([]))
    worker: ChatWorker | None = None
    _worker_task: asyncio.Task[None] | None = None
    _prov_task: asyncio.Task[None] | None = None
    status_poll_s = 0.02  # (class attribute, not a field)

    # --- worker and provisioner ---------------------------------------------------------

    def start_worker(self, **overrides: Any) -> ChatWorker:
        worker = install_chatd(
            self.graph, model_for=self.model_for, dialer=self.dialer, register=False
        )
        for name, value in overrides.items():
            setattr(worker, f"_{name}", value)
        self.worker = worker
        self._worker_task = asyncio.create_task(worker.run())
        return worker

    # --- chats ---------------------------------------------------------------------------

    async def run_chat(self, text: str, model: Model, timeout: float = 30) -> Chat:
        chat = await self.new_chat(text, model)
        return await self.wait_status(chat.id, timeout=timeout)

    async def messages(self, chat_id: uuid.UUID) -> list[StoredMessage]:
        return await self.chats.messages(chat_id)

    # --- workspaces ----------------------------------------------------------------------

    async def push_template(self, source: str) -> uuid.UUID:
        spec = parse_template(source)
        template, _ = await self.graph.template_store.push(
            spec=spec_to_json(spec), source=source, user_id=self.owner.id
        )
        return template.id  # type: ignore[no-any-return]

    async def create_workspace(self, name: str = "ws") -> tuple[Workspace, Build]:
        template = await self.graph.template_store.get(self.template_id)
        ws, build = await self.graph.workspaces.create(self.owner, template=template, name=name)
        await self.graph.workspaces.wait_for_build(build.id, timeout_s=30)
        await self.wait_agent_ready(ws.id)
        return ws, build

    async def wait_agent_ready(self, workspace_id: uuid.UUID, timeout: float = 20) -> AgentRow:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            agents = await self.graph.agents.latest_build_agents(workspace_id)
            if agents and agents[0].lifecycle_state is Lifecycle.READY and agents[0].dial_address:
                return agents[0]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"agent of {workspace_id} not ready: {agents}")
            await asyncio.sleep(0.05)

    async def transition(self, workspace_id: uuid.UUID, transition: Transition) -> Build:
        build, _ = await self.graph.workspaces.transition(self.owner, workspace_id, transition)
        return build  # type: ignore[no-any-return]

    async def stop_workspace(self, workspace_id: uuid.UUID) -> Build:
        build = await self.transition(workspace_id, Transition.STOP)
        await self.graph.workspaces.wait_for_build(build.id, timeout_s=30)
        return build

    def add_inert_backends(self) -> None:
        """Register ``inert`` and ``agentless`` (:class:`InertBackend`) on the graph."""
        engine = self.graph.engine
        self.graph.backends["inert"] = InertBackend("inert", engine)
        self.graph.backends["agentless"] = InertBackend("agentless", engine, drop_agents=True)

    async def workspace_from(
        self, template_id: uuid.UUID, name: str, *, wait: bool = True
    ) -> tuple[Workspace, Build]:
        """A workspace of another template; with ``wait`` its first build has finished."""
        template = await self.graph.template_store.get(template_id)
        ws, build = await self.graph.workspaces.create(self.owner, template=template, name=name)
        if wait:
            build = await self.graph.workspaces.wait_for_build(build.id, timeout_s=30)
        return ws, build

    async def make_canceling(self, build: Build) -> Build:
        """Put the build's pending job into ``canceling`` (claimed by no live provisioner,
        then canceled), where it stays: call with the provisioner paused."""
        async with self.graph.engine.begin() as conn:
            await conn.execute(
                sa.update(provisioner_jobs)
                .where(provisioner_jobs.c.id == build.job_id)
                .values(started_at=self.graph.clock.now())
            )
        await self.graph.workspace_store.cancel_job(build.job_id)
        return await self.graph.workspace_store.get_build(build.id)  # type: ignore[no-any-return]

    def record_events(self, chat_id: uuid.UUID) -> list[StreamEvent]:
        """Every hub event of the chat from now on (publish is wrapped, no subscriber race)."""
        seen: list[StreamEvent] = []
        hub = self.graph.hub
        original = hub.publish

        def publish(cid: uuid.UUID, event: str, data: dict[str, Any]) -> StreamEvent:
            ev = original(cid, event, data)
            if cid == chat_id:
                seen.append(ev)
            return ev

        hub.publish = publish
        return seen
