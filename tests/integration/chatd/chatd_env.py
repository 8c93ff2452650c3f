"""Helpers for chat-daemon integration tests (real server, real agents, the real
worker): imported by the tests and by this folder's conftest."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_ai.models import Model

from support.server import RunningServer
from tether.chatd.adapters import AgentDialer
from tether.chatd.install import install_chatd
from tether.chatd.models import Chat, ChatStatus, StoredMessage
from tether.chatd.stream import StreamEvent
from tether.chatd.types import AgentRow
from tether.chatd.worker import ChatWorker
from tether.db.chats import ChatStore
from tether.llm.scripted import script_model
from tether.workspaces.models import Build, Lifecycle, Transition, User, Workspace
from tether.workspaces.templates import parse_template, spec_to_json

REPO = Path(__file__).resolve().parents[3]
PYTHON_TEMPLATE = REPO / "examples" / "templates" / "python.yaml"
TERMINAL = (ChatStatus.WAITING, ChatStatus.ERROR)


class CountingDialer:
    """The real dialer, recording every dial (probe dials carry no chat headers)."""

    def __init__(self, inner: AgentDialer) -> None:
        self.inner = inner
        self.calls: list[tuple[uuid.UUID, dict[str, str]]] = []

    async def dial(self, agent: AgentRow, *, headers: dict[str, str]) -> Any:
        self.calls.append((agent.id, dict(headers)))
        return await self.inner.dial(agent, headers=headers)

    @property
    def probes(self) -> int:
        return sum(1 for _, h in self.calls if not h)


@dataclass
class Chatd:
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

    @property
    def graph(self) -> Any:
        return self.server.graph

    @property
    def chats(self) -> ChatStore:
        return self.graph.chats  # type: ignore[no-any-return]

    # --- worker and provisioner ---------------------------------------------------------

    def model_for(self, chat: Chat) -> Model:
        if chat.parent_chat_id is not None and chat.parent_chat_id in self.child_models:
            return self.child_models[chat.parent_chat_id]
        for key in (chat.id, chat.root_chat_id):
            if key is not None and key in self.models:
                return self.models[key]
        return self.default_model

    def start_worker(self, **overrides: Any) -> ChatWorker:
        worker = install_chatd(
            self.graph, model_for=self.model_for, dialer=self.dialer, register=False
        )
        for name, value in overrides.items():
            setattr(worker, f"_{name}", value)
        self.worker = worker
        self._worker_task = asyncio.create_task(worker.run())
        return worker

    async def stop_worker(self) -> None:
        task, self._worker_task = self._worker_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def resume_provisioner(self) -> None:
        if self._prov_task is None:
            self._prov_task = asyncio.create_task(self.graph.provisioner.run())

    async def pause_provisioner(self) -> None:
        task, self._prov_task = self._prov_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- chats ---------------------------------------------------------------------------

    async def new_chat(self, text: str, model: Model | None = None, **kwargs: Any) -> Chat:
        chat = await self.chats.create(
            owner_id=self.owner.id,
            title=text[:40],
            first_message=[{"type": "text", "text": text}],
            **kwargs,
        )
        if model is not None:
            self.models[chat.id] = model
        if self.worker is not None:
            self.worker.wake()
        return chat

    async def send(self, chat_id: uuid.UUID, text: str) -> None:
        await self.chats.send_user_message(chat_id, [{"type": "text", "text": text}])
        if self.worker is not None:
            self.worker.wake()

    async def wait_status(
        self, chat_id: uuid.UUID, statuses: tuple[ChatStatus, ...] = TERMINAL, timeout: float = 30
    ) -> Chat:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            chat = await self.chats.get(chat_id)
            if chat.status in statuses:
                return chat
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"chat stayed {chat.status} (wanted {statuses})")
            await asyncio.sleep(0.02)

    async def run_chat(self, text: str, model: Model, timeout: float = 30) -> Chat:
        chat = await self.new_chat(text, model)
        return await self.wait_status(chat.id, timeout=timeout)

    async def messages(self, chat_id: uuid.UUID) -> list[StoredMessage]:
        return await self.chats.messages(chat_id)

    async def results(
        self, chat_id: uuid.UUID, tool_name: str | None = None
    ) -> list[dict[str, Any]]:
        out = []
        for m in await self.messages(chat_id):
            for p in m.parts:
                if p.get("type") == "tool-result" and tool_name in (None, p["tool_name"]):
                    out.append(p)
        return out

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
