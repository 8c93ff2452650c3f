"""Typed FastAPI dependencies: each route names the services it uses, so a reader (and mypy)
sees what it touches. They read the one :class:`~tether.wiring.Graph` that
:func:`tether.api.app.create_app` puts on ``app.state``; no route reads ``app.state``
itself. Every dependency takes an ``HTTPConnection``, so HTTP routes, SSE streams and
WebSocket handlers use the same ones. Tests override any of them the FastAPI way
(``app.dependency_overrides[chat_service] = ...``). They are ``async def``: FastAPI runs a
plain ``def`` dependency in a worker thread, a thread hand-off per dependency per request
for what is an attribute read."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from tether.agentconn.clients import AgentClients
from tether.agentconn.liveness import AgentLiveness
from tether.api.watchpoll import ChatWatchPoller
from tether.chatd.compaction import LongChat, longchat_of
from tether.chatd.edits import edit_message
from tether.chatd.service import ChatService, Content
from tether.chatd.usagelimits import UsageGuard, usage_guard_of
from tether.clock import Clock
from tether.db.agents import AgentStore
from tether.db.chatconfig import ChatConfigStore
from tether.db.chatedits import Edit
from tether.db.pubsub import EventBus
from tether.db.templates import TemplateStore
from tether.db.users import ApiToken, UserStore
from tether.db.workspaces import WorkspaceStore
from tether.domain.user import User
from tether.llm.registry import ModelRegistry
from tether.observability.metrics import Metrics
from tether.settings import Settings
from tether.workspaces.backends.base import WorkspaceBackend
from tether.workspaces.pings import PingBatcher
from tether.workspaces.service import WorkspaceService

if TYPE_CHECKING:  # wiring imports most of tether; the API needs the type only
    from tether.wiring import Graph


def graph_of(conn: HTTPConnection) -> Graph:
    """The app's graph. Only this module and the app factory use it; routes take the typed
    dependencies below."""
    graph: Graph = conn.app.state.graph
    return graph


async def settings(conn: HTTPConnection) -> Settings:
    return graph_of(conn).settings


async def clock(conn: HTTPConnection) -> Clock:
    return graph_of(conn).clock


async def engine(conn: HTTPConnection) -> AsyncEngine:
    return graph_of(conn).engine


async def bus(conn: HTTPConnection) -> EventBus:
    return graph_of(conn).bus


async def users(conn: HTTPConnection) -> UserStore:
    return graph_of(conn).users


TokenAuth = Callable[[str], Awaitable[tuple[User, ApiToken]]]


async def token_auth(conn: HTTPConnection) -> TokenAuth:
    """How a request's token is checked: the graph's cache (api/tokencache.py), else the
    store itself."""
    graph = graph_of(conn)
    cache = graph.token_cache
    return cache.authenticate if cache is not None else graph.users.authenticate_token


async def template_store(conn: HTTPConnection) -> TemplateStore:
    return graph_of(conn).template_store


async def workspace_store(conn: HTTPConnection) -> WorkspaceStore:
    return graph_of(conn).workspace_store


async def workspace_service(conn: HTTPConnection) -> WorkspaceService:
    return graph_of(conn).workspaces


async def agent_store(conn: HTTPConnection) -> AgentStore:
    return graph_of(conn).agents


async def agent_clients(conn: HTTPConnection) -> AgentClients:
    return graph_of(conn).agent_clients


async def backends(conn: HTTPConnection) -> dict[str, WorkspaceBackend]:
    return graph_of(conn).backends


async def pings(conn: HTTPConnection) -> PingBatcher:
    return graph_of(conn).pings


async def liveness(conn: HTTPConnection) -> AgentLiveness:
    return graph_of(conn).liveness


async def metrics(conn: HTTPConnection) -> Metrics:
    return graph_of(conn).metrics


async def chat_service(conn: HTTPConnection) -> ChatService:
    return graph_of(conn).chat_service


async def models(conn: HTTPConnection) -> ModelRegistry:
    return graph_of(conn).models


async def longchat(conn: HTTPConnection) -> LongChat:
    return longchat_of(graph_of(conn))


async def usage_guard(conn: HTTPConnection) -> UsageGuard:
    return usage_guard_of(graph_of(conn))


EditMessage = Callable[[User, uuid.UUID, uuid.UUID, Content], Awaitable[Edit]]


async def message_editor(conn: HTTPConnection) -> EditMessage:
    """``edit_message`` (chatd/edits.py) bound to this app's services."""
    return functools.partial(edit_message, graph_of(conn))


async def chat_watch_poller(conn: HTTPConnection) -> ChatWatchPoller:
    """The process's one poll behind every chats-watch stream, made on first use."""
    graph = graph_of(conn)
    poller = graph.extras.get("chat_watch_poller")
    if poller is None:
        service = graph.chat_service
        poller = graph.extras["chat_watch_poller"] = ChatWatchPoller(
            graph.engine, graph.clock, lambda: service.stream_poll_s
        )
    assert isinstance(poller, ChatWatchPoller)
    return poller


async def chat_config_store(conn: HTTPConnection) -> ChatConfigStore:
    graph = graph_of(conn)
    return ChatConfigStore(graph.engine, graph.clock, graph.bus)  # writes are announced


SettingsDep = Annotated[Settings, Depends(settings)]
ClockDep = Annotated[Clock, Depends(clock)]
EngineDep = Annotated[AsyncEngine, Depends(engine)]
BusDep = Annotated[EventBus, Depends(bus)]
UserStoreDep = Annotated[UserStore, Depends(users)]
TokenAuthDep = Annotated[TokenAuth, Depends(token_auth)]
TemplateStoreDep = Annotated[TemplateStore, Depends(template_store)]
WorkspaceStoreDep = Annotated[WorkspaceStore, Depends(workspace_store)]
WorkspaceServiceDep = Annotated[WorkspaceService, Depends(workspace_service)]
AgentStoreDep = Annotated[AgentStore, Depends(agent_store)]
AgentClientsDep = Annotated[AgentClients, Depends(agent_clients)]
BackendsDep = Annotated[dict[str, WorkspaceBackend], Depends(backends)]
PingsDep = Annotated[PingBatcher, Depends(pings)]
LivenessDep = Annotated[AgentLiveness, Depends(liveness)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
ChatServiceDep = Annotated[ChatService, Depends(chat_service)]
ModelsDep = Annotated[ModelRegistry, Depends(models)]
LongChatDep = Annotated[LongChat, Depends(longchat)]
ChatConfigStoreDep = Annotated[ChatConfigStore, Depends(chat_config_store)]
UsageGuardDep = Annotated[UsageGuard, Depends(usage_guard)]
MessageEditorDep = Annotated[EditMessage, Depends(message_editor)]
ChatWatchPollerDep = Annotated[ChatWatchPoller, Depends(chat_watch_poller)]
