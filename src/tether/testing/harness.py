"""The one harness for tests and benchmarks that run tether for real: a tether server
(uvicorn on a loopback port) inside the caller's event loop with scaled-down timings and an
authenticated httpx client (:func:`running_server`); the same listener without the
server's background jobs (:func:`serve_app`); finding and freezing a workspace's agent
process (:func:`agent_pid`, :func:`frozen`); and driving chats through the store
(:class:`ChatDriver`). Every workspace still running at teardown is stopped, so no agent
process outlives its test.

It uses files of a source checkout (``examples/templates``, ``tests/fixtures``): tests
import it as ``tether.testing.harness``; benchmarks run as modules from the repository
root (``python -m bench.turns``), see docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic_ai.models import Model

from tether.api.app import create_app
from tether.cancellation import cancel_and_wait
from tether.chatd.worker import ChatWorker
from tether.db.chats import ChatStore
from tether.domain.chat import Chat, ChatStatus
from tether.domain.user import User
from tether.httpparser import uvicorn_http
from tether.server import background_jobs, bootstrap
from tether.settings import Settings
from tether.wiring import Graph, build_graph
from tether.workspaces.backends.base import WorkspaceRef

REPO = Path(__file__).resolve().parents[3]  # src/tether/testing/harness.py
PYTHON_TEMPLATE = REPO / "examples" / "templates" / "python.yaml"


START_TIMEOUT_S = 10.0  # a loopback listener on a loaded machine
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fast_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "port": free_port(),
        "cli_config": tmp_path / "cli.json",
        "agent_ping_interval_s": 0.2,
        "agent_inactive_disconnect_s": 1.0,
        "agent_stop_grace_s": 1.0,
        "provisioner_poll_s": 0.1,
        "build_poll_s": 0.1,
        "ttl_sweep_s": 0.2,
        "worker_poll_s": 0.1,
        # test templates run fixture scripts (MCP servers) from the repo inside the sandbox
        "sandbox_ro_paths": [REPO / "tests" / "fixtures"],
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningServer:
    graph: Graph
    url: str
    token: str
    client: httpx.AsyncClient

    async def push_template(self, source: str | None = None) -> dict[str, Any]:
        text = source if source is not None else PYTHON_TEMPLATE.read_text()
        r = await self.client.post("/api/v1/templates", json={"source": text})
        r.raise_for_status()
        return dict(r.json())

    async def user_client(self, name: str, role: str = "member") -> httpx.AsyncClient:
        user = await self.graph.users.create_user(name, role)
        token, _ = await self.graph.users.create_token(user.id, "test")
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    async def wait_ready(self, ref: str, *, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until the workspace's first agent has a final lifecycle state."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            data = (await self.client.get(f"/api/v1/workspaces/{ref}")).json()
            agents = data.get("agents") or []
            if agents and agents[0]["lifecycle_state"] not in ("created", "starting"):
                if agents[0]["status"] == "connected":
                    return dict(data)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"workspace {ref} not ready in {timeout}s: {data}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings, *, stop_workspaces: bool = True, **graph_kwargs: Any
) -> AsyncIterator[RunningServer]:
    """A graph, its bootstrap admin and the API with the server's background jobs."""
    graph = await build_graph(settings, **graph_kwargs)
    token = await bootstrap(graph)
    if token is None:  # a restart on the same data: reuse the admin's CLI token
        token = json.loads(settings.cli_config.read_text())["token"]
    app = create_app(graph, background=background_jobs(graph))
    client: httpx.AsyncClient | None = None
    try:
        # Stop the server (and with it the provisioner) before the workspaces, so no build
        # in flight can launch an agent after the workspaces were stopped.
        async with serve_app(app, settings) as url:
            client = httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            yield RunningServer(graph, url, token, client)
    finally:
        if client is not None:
            await client.aclose()
        if stop_workspaces:
            # every workspace that has files, deleted ones included: no process may leak
            for ws_id in _workspace_ids(settings):
                for backend in graph.backends.values():
                    with contextlib.suppress(Exception):
                        await _stop_backend(backend, ws_id)
        await graph.aclose()


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, settings: Settings, *, graceful_shutdown_s: int | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``settings.port`` (loopback) until the block ends; yields the URL.
    A real socket, because in-process ASGI transports buffer SSE."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=settings.port,
            log_level="warning",
            http=uvicorn_http(settings.http_parser),  # as `tether server` (src/tether/server.py)
            ws="websockets-sansio",
            timeout_graceful_shutdown=graceful_shutdown_s,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not server.started:
                if task.done():
                    break
                await asyncio.sleep(0.02)
        assert server.started, "test server did not start"
        yield settings.server_url()
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        await cancel_and_wait(task)


def _workspace_ids(settings: Settings) -> list[uuid.UUID]:
    ids = []
    for root in (settings.data_dir / "workspaces", settings.data_dir / "docker"):
        for entry in root.iterdir() if root.is_dir() else []:
            with contextlib.suppress(ValueError):
                ids.append(uuid.UUID(entry.name))
    return ids


async def _stop_backend(backend: Any, workspace_id: uuid.UUID) -> None:
    from tether.workspaces.backends.base import WorkspaceRef

    async def sink(_level: str, _line: str) -> None:
        return None

    ref = WorkspaceRef(workspace_id=workspace_id, owner_name="", name="", template_name="")
    await asyncio.wait_for(backend.stop(ref, sink), 15)


async def agent_pid(graph: Graph, workspace_id: uuid.UUID, backend: str = "local") -> int:
    """The PID of the workspace's (one) agent process."""
    ws = await graph.workspace_store.get(workspace_id)
    ref = WorkspaceRef(workspace_id=ws.id, owner_name="", name=ws.name, template_name="")
    runtime = await graph.backends[backend].inspect(ref)
    [pid] = runtime.agent_pids.values()
    return int(pid)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block; SIGCONT on the way out, whatever happens (a stopped
    agent left behind would hang the teardown's graceful stop)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def agent_pid_on_disk(data_dir: Path, workspace_id: uuid.UUID) -> int:
    """The PID of the workspace's (one) agent, for tests that run the server as a separate
    process (no graph to ask): read from the local backend's records under ``data_dir``."""
    records = list((data_dir / "workspaces" / str(workspace_id) / "agents").glob("*.pid"))
    [record] = records
    return int(json.loads(record.read_text())["pid"])


TERMINAL = (ChatStatus.WAITING, ChatStatus.ERROR)


async def _cancel_and_raise(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it; an error it died of is raised (unlike
    :func:`~tether.cancellation.cancel_and_wait`, which drops it: a test must see it)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ChatDriver:
    """Mixin; the host provides ``server``, ``owner``, the scripted ``models`` (by chat or
    root chat id), ``child_models`` (by parent id), ``default_model`` and ``worker``."""

    server: RunningServer
    owner: User
    models: dict[uuid.UUID, Model]
    child_models: dict[uuid.UUID, Model]
    default_model: Model
    worker: ChatWorker | None
    _worker_task: asyncio.Task[None] | None
    _prov_task: asyncio.Task[None] | None
    status_poll_s: float = 0.01

    @property
    def graph(self) -> Graph:
        return self.server.graph

    @property
    def chats(self) -> ChatStore:
        return self.graph.chats

    def model_for(self, chat: Chat) -> Model:
        """The scripted model of a chat: a subagent's by its parent, else by the chat or
        its root, else the default."""
        if chat.parent_chat_id is not None and chat.parent_chat_id in self.child_models:
            return self.child_models[chat.parent_chat_id]
        for key in (chat.id, chat.root_chat_id):
            if key is not None and key in self.models:
                return self.models[key]
        return self.default_model

    # --- the worker and the provisioner, as tasks of the test's loop ---------------------

    async def stop_worker(self) -> None:
        task, self._worker_task = self._worker_task, None
        await _cancel_and_raise(task)

    def resume_provisioner(self) -> None:
        if self._prov_task is None:
            self._prov_task = asyncio.create_task(self.graph.provisioner.run())

    async def pause_provisioner(self) -> None:
        task, self._prov_task = self._prov_task, None
        await _cancel_and_raise(task)

    # --- chats -----------------------------------------------------------------------------

    async def results(
        self, chat_id: uuid.UUID, tool_name: str | None = None
    ) -> list[dict[str, Any]]:
        """The chat's tool-result parts (of ``tool_name`` only, when given), oldest first."""
        return [
            p
            for m in await self.chats.messages(chat_id)
            for p in m.parts
            if p.get("type") == "tool-result" and tool_name in (None, p["tool_name"])
        ]

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
            await asyncio.sleep(self.status_poll_s)
