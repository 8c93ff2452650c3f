"""A real server (uvicorn, SQLite, local backend, real ``tether agent`` processes) with a chat
worker whose models are scripted per chat, plus the instruments the binding tests and the
binding benchmark read: a dialer that counts dials, a binding store that records every call
(and can fail one on purpose), a statement counter on the engine, and a timer of tool calls
(from the stream hub's tool-call / tool-result events).

Used by ``tests/integration/binding`` and ``bench/binding.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import re
import select
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic_ai.models import Model

from support.dialers import CountingDialer
from tether.chatd.binding import AgentDialer, AgentRow, ChatBinding, StoreBinding
from tether.chatd.install import install_chatd
from tether.chatd.worker import ChatWorker
from tether.db.engine import StatementCounter
from tether.db.tables import workspace_agents
from tether.domain.agent import Lifecycle
from tether.domain.chat import Chat
from tether.domain.user import Role, User
from tether.domain.workspace import Transition
from tether.llm.scripted import script_model
from tether.settings import Settings
from tether.testing.harness import (
    ChatDriver,
    RunningServer,
    fast_settings,
    free_port,
    running_server,
)
from tether.testing.harness import agent_pid as support_agent_pid
from tether.workspaces.template_parse import parse_template, spec_to_json

REPO = Path(__file__).resolve().parents[3]
PYTHON_TEMPLATE = REPO / "examples" / "templates" / "python.yaml"
# Statements that resolve or validate an agent: reads of agent rows (by id, or the latest
# build's, which joins the builds). Background jobs (TTL sweep, provisioner) read builds
# through other tables and do not match.
RESOLUTION_RE = r"^\s*SELECT\b.*\bFROM workspace_agents\b"
BINDING_WRITE_RE = r"^\s*UPDATE chats SET build_id"


def resolution_queries(statements: list[str]) -> list[str]:
    rx = re.compile(RESOLUTION_RE, re.IGNORECASE | re.DOTALL)
    return [s for s in statements if rx.search(s)]


def binding_writes(statements: list[str]) -> list[str]:
    rx = re.compile(BINDING_WRITE_RE, re.IGNORECASE)
    return [s for s in statements if rx.search(s)]


class RecordingStore:
    """StoreBinding that records every call and can fail the next call of a method."""

    def __init__(self, inner: StoreBinding) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._fail: dict[str, Exception] = {}

    def fail_next(self, method: str, error: Exception) -> None:
        self._fail[method] = error

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        error = self._fail.pop(method, None)
        if error is not None:
            raise error

    def names(self, since: int = 0) -> list[str]:
        return [name for name, _ in self.calls[since:]]

    async def get_agent(self, agent_id: uuid.UUID) -> AgentRow | None:
        self._enter("get_agent", agent_id)
        return await self.inner.get_agent(agent_id)

    async def latest_build_agents(self, workspace_id: uuid.UUID) -> list[AgentRow]:
        self._enter("latest_build_agents", workspace_id)
        return await self.inner.latest_build_agents(workspace_id)

    async def get_chat_binding(self, chat_id: uuid.UUID) -> ChatBinding:
        self._enter("get_chat_binding", chat_id)
        return await self.inner.get_chat_binding(chat_id)

    async def update_build_agent_binding(
        self,
        chat_id: uuid.UUID,
        *,
        workspace_id: uuid.UUID,
        build_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> ChatBinding:
        self._enter("update_build_agent_binding", chat_id, workspace_id, build_id, agent_id)
        return await self.inner.update_build_agent_binding(
            chat_id, workspace_id=workspace_id, build_id=build_id, agent_id=agent_id
        )


_SPAN: contextvars.ContextVar[ToolSpan | None] = contextvars.ContextVar("tool_span", default=None)


@dataclass
class ToolSpan:
    """One tool call: its wall time, every statement on the engine meanwhile
    (``statements``, background jobs included) and the statements the tool call itself ran
    (``own``: attributed through a context variable the tool's task inherits)."""

    chat_id: uuid.UUID
    tool_call_id: str
    tool_name: str
    started: float
    ended: float | None = None
    statements: list[str] = field(default_factory=list)
    own: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        assert self.ended is not None, f"{self.tool_name} has not finished"
        return self.ended - self.started


class ToolTimer:
    """Times every tool call (hub ``tool-call`` → ``tool-result`` events) and records the
    statements run meanwhile. Call :meth:`close` to detach from the engine."""

    def __init__(self, hub: Any, counter: StatementCounter, engine: Any) -> None:
        self.spans: list[ToolSpan] = []
        self._open: dict[str, tuple[ToolSpan, Any, contextvars.Token[ToolSpan | None]]] = {}
        self._sync_engine = engine.sync_engine
        original = hub.publish

        def publish(chat_id: uuid.UUID, event: str, data: dict[str, Any]) -> Any:
            kind = data.get("kind") if event == "message_part" else None
            if kind == "tool-call":
                span = ToolSpan(chat_id, data["tool_call_id"], data["tool_name"], time.monotonic())
                measuring = counter.measure()
                span.statements = measuring.__enter__().statements
                token = _SPAN.set(span)  # the tool's task is created after this: inherits it
                self._open[data["tool_call_id"]] = (span, measuring, token)
                self.spans.append(span)
            elif kind == "tool-result" and data["tool_call_id"] in self._open:
                span, measuring, _token = self._open.pop(data["tool_call_id"])
                span.ended = time.monotonic()
                measuring.__exit__(None, None, None)
                _SPAN.set(None)
            return original(chat_id, event, data)

        hub.publish = publish
        sa.event.listen(self._sync_engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, _c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        span = _SPAN.get()
        if span is not None and span.ended is None:
            span.own.append(statement)

    def close(self) -> None:
        sa.event.remove(self._sync_engine, "before_cursor_execute", self._on_execute)

    def of(self, chat_id: uuid.UUID, tool_name: str | None = None) -> list[ToolSpan]:
        return [
            s
            for s in self.spans
            if s.chat_id == chat_id and tool_name in (None, s.tool_name) and s.ended is not None
        ]


@dataclass
class BlackHole:
    """A listening socket nobody accepts on: the kernel completes a client's handshake, then
    nothing ever answers."""

    listener: socket.socket

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def dialled(self) -> bool:
        """Whether a connection waits in the accept queue (a dial reached the hole)."""
        return bool(select.select([self.listener], [], [], 0)[0])


@contextlib.contextmanager
def tcp_black_hole() -> Iterator[BlackHole]:
    """An address that accepts TCP connections but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield BlackHole(listener)
    finally:
        listener.close()


@dataclass
class BindingEnv(ChatDriver):
    """One server plus a chat worker; :meth:`restart` replaces both on the same data dir."""

    settings: Settings
    server: RunningServer
    owner: User
    template_id: uuid.UUID
    dialer: CountingDialer
    models: dict[uuid.UUID, Model] = field(default_factory=dict)
    child_models: dict[uuid.UUID, Model] = field(default_factory=dict)  # by parent id
    default_model: Model = field(default_factory=lambda: script_model([]))
    worker: ChatWorker | None = None
    store: RecordingStore | None = None
    counter: StatementCounter | None = None
    timer: ToolTimer | None = None
    _stack: contextlib.AsyncExitStack | None = None
    _worker_task: asyncio.Task[None] | None = None
    _prov_task: asyncio.Task[None] | None = None
    backend: str = "local"  # the template's workspace backend ("docker": on a Docker engine)

    # --- worker, provisioner, restart ---------------------------------------------------

    def start_worker(self, **overrides: Any) -> ChatWorker:
        """A chat worker on the current graph (fresh per-chat state: a cold cache)."""
        worker = install_chatd(
            self.graph, model_for=self.model_for, dialer=self.dialer, register=False
        )
        self.store = RecordingStore(StoreBinding(self.chats, self.graph.agents))
        worker._binding_store = self.store
        for name, value in overrides.items():
            setattr(worker, f"_{name}", value)
        self.worker = worker
        if self.counter is None:
            self.counter = StatementCounter(self.graph.engine)
        if self.timer is None:
            self.timer = ToolTimer(self.graph.hub, self.counter, self.graph.engine)
        self._worker_task = asyncio.create_task(worker.run())
        return worker

    async def close(self) -> None:
        await self.stop_worker()
        self.resume_provisioner()
        await self.pause_provisioner()
        if self.counter is not None:
            self.counter.close()
            self.counter = None
        if self.timer is not None:
            self.timer.close()
            self.timer = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def restart(self) -> None:
        """A server restart on the same data dir: new graph, new hub, new worker state.
        (Every workspace's processes are stopped by the old server's teardown.)"""
        await self.close()
        self.settings = self.settings.model_copy(update={"port": free_port()})
        self._stack = contextlib.AsyncExitStack()
        self.server = await self._stack.enter_async_context(running_server(self.settings))
        # the new graph's agent-client cache (the old one is closed with the old server)
        self.dialer.inner = AgentDialer(clients=self.graph.agent_clients)
        self.resume_provisioner()

    # --- chats ----------------------------------------------------------------------------

    async def turn(self, chat_id: uuid.UUID, text: str, timeout: float = 30) -> Chat:
        await self.send(chat_id, text)
        return await self.wait_status(chat_id, timeout=timeout)

    def spans(self, chat_id: uuid.UUID, tool_name: str | None = None) -> list[ToolSpan]:
        assert self.timer is not None
        return self.timer.of(chat_id, tool_name)

    def spans_open(self, chat_id: uuid.UUID, tool_name: str) -> list[ToolSpan]:
        """Tool calls of the chat that have started and not finished."""
        assert self.timer is not None
        return [
            s
            for s in self.timer.spans
            if s.chat_id == chat_id and s.tool_name == tool_name and s.ended is None
        ]

    # --- workspaces -------------------------------------------------------------------------

    async def create_workspace(self, name: str = "ws") -> tuple[uuid.UUID, AgentRow]:
        template = await self.graph.template_store.get(self.template_id)
        ws, build = await self.graph.workspaces.create(self.owner, template=template, name=name)
        await self.graph.workspaces.wait_for_build(build.id, timeout_s=30)
        return ws.id, await self.wait_agent_ready(ws.id)

    async def wait_agent_ready(self, workspace_id: uuid.UUID, timeout: float = 20) -> AgentRow:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            agents = await self.graph.agents.latest_build_agents(workspace_id)
            if agents and agents[0].lifecycle_state is Lifecycle.READY and agents[0].dial_address:
                return agents[0]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"agent of {workspace_id} not ready: {agents}")
            await asyncio.sleep(0.02)

    async def stop_workspace(self, workspace_id: uuid.UUID) -> None:
        build, _ = await self.graph.workspaces.transition(self.owner, workspace_id, Transition.STOP)
        await self.graph.workspaces.wait_for_build(build.id, timeout_s=30)

    async def rebuild(self, workspace_id: uuid.UUID) -> AgentRow:
        """Stop + start outside any chat: the new build has new agent ids."""
        build = await self.graph.workspaces.rebuild(self.owner, workspace_id, timeout_s=30)
        await self.graph.workspaces.wait_for_build(build.id, timeout_s=30)
        return await self.wait_agent_ready(workspace_id)

    async def agent_pid(self, workspace_id: uuid.UUID) -> int:
        return await support_agent_pid(self.graph, workspace_id, self.backend)

    async def kill_agent(self, workspace_id: uuid.UUID) -> None:
        """``kill -9`` the workspace's agent process (the build stays as it is)."""
        os.kill(await self.agent_pid(workspace_id), signal.SIGKILL)

    async def set_agent(self, agent_id: uuid.UUID, **values: Any) -> None:
        async with self.graph.engine.begin() as conn:
            await conn.execute(
                sa.update(workspace_agents)
                .where(workspace_agents.c.id == agent_id)
                .values(**values)
            )


@contextlib.asynccontextmanager
async def binding_env(
    tmp_path: Path, backend: str = "local", **overrides: Any
) -> AsyncIterator[BindingEnv]:
    """``backend="docker"``: the template runs on the docker backend (pass ``docker_host``)."""
    values: dict[str, Any] = {
        "run_chatd": False,
        "run_provisioner": False,
        "provider_retry_base_s": 0.01,
        "agent_ready_retry_s": 0.1,
        "heartbeat_s": 0.2,
        "stale_after_s": 5.0,
    }
    values.update(overrides)
    settings = fast_settings(tmp_path, **values)
    stack = contextlib.AsyncExitStack()
    server = await stack.enter_async_context(running_server(settings))
    graph = server.graph
    db_owner = await graph.users.get_user_by_name("admin")
    owner = User(
        id=db_owner.id, name=db_owner.name, role=Role.MEMBER, created_at=db_owner.created_at
    )
    dialer = CountingDialer(
        AgentDialer(clients=graph.agent_clients)  # the one cache, shared with the API
    )
    env = BindingEnv(
        settings, server, owner, uuid.UUID(int=0), dialer, _stack=stack, backend=backend
    )
    try:
        source = PYTHON_TEMPLATE.read_text().replace("backend: local", f"backend: {backend}")
        template, _ = await graph.template_store.push(
            spec=spec_to_json(parse_template(source)), source=source, user_id=owner.id
        )
        env.template_id = template.id
        env.resume_provisioner()
        yield env
    finally:
        await env.close()
