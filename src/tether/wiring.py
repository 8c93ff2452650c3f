"""Builds tether's object graph once from :class:`Settings` (no module-level state).

``Graph`` holds every long-lived object; the server, the tests and the benchmarks build it
the same way and close it once."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tether.agentconn.clients import AgentClients
from tether.agentconn.liveness import AgentLiveness
from tether.api.tokencache import TokenCache
from tether.chatd.images import ImageRules
from tether.chatd.relay import StreamRelay
from tether.chatd.service import ChatService
from tether.chatd.stream import ChatStreamHub
from tether.clock import Clock, SystemClock
from tether.db.agents import AgentStore
from tether.db.chats import ChatStore
from tether.db.engine import create_engine
from tether.db.llm_models import ModelStore
from tether.db.migrate import upgrade
from tether.db.pgbus import PostgresBus
from tether.db.pubsub import EventBus, InProcessBus
from tether.db.serverkeys import check_fingerprint
from tether.db.templates import TemplateStore
from tether.db.users import UserStore
from tether.db.workspaces import WorkspaceStore
from tether.llm.config import load_operator_models, option_defaults
from tether.llm.registry import ModelRegistry
from tether.observability.metrics import Metrics
from tether.serverkey import ServerKey, open_server_key
from tether.settings import Settings
from tether.workspaces.backends.base import WorkspaceBackend
from tether.workspaces.backends.docker import docker_backend
from tether.workspaces.backends.local import LocalBackend
from tether.workspaces.backends.sandbox import UNSANDBOXED_WARNING, Sandbox
from tether.workspaces.pings import PingBatcher
from tether.workspaces.provisioner import Provisioner
from tether.workspaces.service import WorkspaceService

log = logging.getLogger("tether.wiring")


@dataclass
class Graph:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    bus: EventBus
    users: UserStore
    template_store: TemplateStore
    workspace_store: WorkspaceStore
    agents: AgentStore
    backends: dict[str, WorkspaceBackend]
    workspaces: WorkspaceService
    provisioner: Provisioner
    agent_clients: AgentClients  # the one cache of agent HTTP clients (API and chats)
    pings: PingBatcher
    chats: ChatStore
    hub: ChatStreamHub
    chat_service: ChatService
    models: ModelRegistry
    liveness: AgentLiveness = field(default_factory=AgentLiveness)
    metrics: Metrics = field(default_factory=Metrics)  # this graph's own registry
    extras: dict[str, Any] = field(default_factory=dict)
    server_key: ServerKey | None = None
    token_cache: TokenCache | None = None  # None: every request queries (api/tokencache.py)

    async def aclose(self) -> None:
        await self.agent_clients.aclose()
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()
        await self.engine.dispose()


async def build_graph(
    settings: Settings,
    *,
    clock: Clock | None = None,
    backends: dict[str, WorkspaceBackend] | None = None,
    bus: EventBus | None = None,
) -> Graph:
    clock = clock or SystemClock()
    metrics = Metrics()
    operator_models = load_operator_models(settings)  # a bad config fails before any I/O
    server_key = open_server_key(settings)  # data dir 0700, SQLite files and key 0600
    engine = create_engine(
        settings.database_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_max_overflow,
        ping_after_idle_s=settings.db_ping_after_idle_s,
    )
    try:
        await upgrade(engine)
        await check_fingerprint(engine, server_key.fingerprint(), clock)
    except BaseException:
        await engine.dispose()
        raise
    if bus is None:
        if engine.dialect.name == "postgresql":
            # replicas share one database: build events and wake-ups cross processes
            pg_bus = PostgresBus(settings.database_url(), clock=clock)
            await pg_bus.start()
            bus = pg_bus
        else:
            bus = InProcessBus()
    users = UserStore(engine, clock, last_used_granularity_s=settings.token_last_used_granularity_s)
    template_store = TemplateStore(engine, clock)
    workspace_store = WorkspaceStore(engine, clock)
    agents = AgentStore(engine, clock, dial_secrets=server_key.dial_secret)
    if backends is None:
        backends = {
            "local": LocalBackend(
                settings.data_dir / "workspaces",
                settings.server_url(),
                agent_command=[sys.executable, "-m", "tether.agent"],
                stop_grace_s=settings.agent_stop_grace_s,
                unsandboxed=settings.unsandboxed,
                sandbox=Sandbox(
                    host_uid=settings.sandbox_uid,
                    extra_ro_paths=settings.sandbox_ro_paths,
                    bwrap=settings.sandbox_bwrap,
                ),
            ),
            "docker": docker_backend(settings),
        }
        if settings.unsandboxed:
            log.warning(UNSANDBOXED_WARNING)
    service = WorkspaceService(
        workspaces=workspace_store,
        templates=template_store,
        agents=agents,
        bus=bus,
        clock=clock,
        inactive_disconnect_s=settings.agent_inactive_disconnect_s,
        build_poll_s=settings.build_poll_s,
        agent_dead_after_s=settings.agent_unreachable_after_s,
    )
    provisioner = Provisioner(
        workspaces=workspace_store,
        templates=template_store,
        agents=agents,
        users=users,
        backends=backends,
        bus=bus,
        clock=clock,
        poll_s=settings.provisioner_poll_s,
        ttl_sweep_s=settings.ttl_sweep_s,
        metrics=metrics,
    )
    liveness = AgentLiveness()
    agent_clients = AgentClients(
        connect_timeout=settings.agent_connect_timeout_s,
        request_timeout=settings.agent_request_timeout_s,
        exec_margin=settings.exec_deadline_margin_s,
        liveness=liveness,
        max_idle=settings.agent_clients_max_idle,
        idle_s=settings.agent_client_idle_s,
        clock=clock,
    )
    chat_store = ChatStore(engine, clock)
    hub = ChatStreamHub()
    models = ModelRegistry(
        operator_models, ModelStore(engine, clock), defaults=option_defaults(settings)
    )
    chat_service = ChatService(
        chats=chat_store,
        workspaces=service,
        hub=hub,
        bus=bus,
        clock=clock,
        max_queued=settings.max_queued_messages,
        models=models,
        images=ImageRules.of(settings),
    )
    graph = Graph(
        settings=settings,
        clock=clock,
        engine=engine,
        bus=bus,
        users=users,
        template_store=template_store,
        workspace_store=workspace_store,
        agents=agents,
        backends=backends,
        workspaces=service,
        provisioner=provisioner,
        agent_clients=agent_clients,
        liveness=liveness,
        metrics=metrics,
        # flushed at least once per ping interval, so status computation never lags a ping
        pings=PingBatcher(agents, clock, flush_s=min(1.0, settings.agent_ping_interval_s)),
        chats=chat_store,
        hub=hub,
        chat_service=chat_service,
        models=models,
        server_key=server_key,
    )
    chat_service.stream_fallback_poll_s = settings.stream_fallback_poll_s
    # one process (the in-process bus): a revocation reaches the cache before its response
    if isinstance(bus, InProcessBus) or settings.auth_cache_across_replicas:
        graph.token_cache = TokenCache(
            users,
            bus,
            clock,
            ttl_s=settings.auth_cache_ttl_s,
            max_entries=settings.auth_cache_max_entries,
        )
        if graph.token_cache.enabled:
            graph.extras.setdefault("background", []).append(graph.token_cache.run)
    if isinstance(bus, PostgresBus) and settings.stream_relay:  # any replica may serve a stream
        relay = StreamRelay(bus)
        hub.relay = relay.offer
        chat_service.stream_remote = relay
        chat_service.stream_complete = relay.live  # streams poll rarely while it listens
        graph.extras.setdefault("background", []).append(relay.run)
    elif engine.dialect.name == "sqlite" and not isinstance(bus, PostgresBus):
        # one process per SQLite file (docs/operations.md §3): every change passes this hub
        chat_service.stream_complete = _always
    if settings.run_chatd:
        from tether.chatd.install import install_chatd  # the worker needs the built graph

        install_chatd(graph)
    return graph


def _always() -> bool:
    return True


@contextlib.asynccontextmanager
async def graph_context(settings: Settings, **kwargs: Any) -> AsyncIterator[Graph]:
    graph = await build_graph(settings, **kwargs)
    try:
        yield graph
    finally:
        await graph.aclose()
