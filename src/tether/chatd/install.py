"""Wire chatd into a :class:`~tether.wiring.Graph`: the deps, the turn runner and the
worker, registered as a background job (``graph.extras["background"]``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_ai.models import Model

from tether.chatd.autotitle import AutoTitler
from tether.chatd.binding import AgentDialer, Dialer, StoreBinding
from tether.chatd.compaction import longchat_of
from tether.chatd.configcache import ConfigCache
from tether.chatd.graphparts import chats_and_hub
from tether.chatd.instructions import InstructionFiles
from tether.chatd.mcptools import McpDiscovery, McpToolCache
from tether.chatd.tools.base import ChatdDeps
from tether.chatd.turn import Instructions, TurnRunner
from tether.chatd.worker import ChatWorker
from tether.db.chatconfig import ChatConfigStore
from tether.domain.chat import Chat
from tether.llm.chatmodel import ModelFor
from tether.llm.registry import ModelRegistry


def chatd_deps(graph: Any, *, dialer: Dialer | None = None) -> ChatdDeps:
    """The deps from the graph; reuses the graph's ``chats`` store and ``hub`` when the API
    side created them (so subscribers see what the worker publishes)."""
    settings = graph.settings
    chats, hub = chats_and_hub(graph)
    config = ChatConfigStore(graph.engine, graph.clock, graph.bus)
    return ChatdDeps(
        settings=settings,
        clock=graph.clock,
        bus=graph.bus,
        chats=chats,
        agents=graph.agents,
        workspace_store=graph.workspace_store,
        template_store=graph.template_store,
        workspaces=graph.workspaces,
        users=graph.users,
        hub=hub,
        metrics=graph.metrics,
        config=config,
        config_cache=ConfigCache(
            config, graph.bus, graph.clock, max_age_s=settings.chat_config_max_age_s
        ),
        service=getattr(graph, "chat_service", None),
        dialer=dialer or graph_dialer(graph),
    )


def graph_dialer(graph: Any) -> AgentDialer:
    """The real dialer over the graph's one agent-client cache (``graph.agent_clients``,
    shared with the API's exec proxy); a graph without one gets a dialer of its own."""
    clients = getattr(graph, "agent_clients", None)
    if clients is not None:
        return AgentDialer(clients=clients)
    settings = graph.settings
    return AgentDialer(
        connect_timeout=settings.agent_connect_timeout_s,
        request_timeout=settings.agent_request_timeout_s,
        exec_margin=settings.exec_deadline_margin_s,
        liveness=getattr(graph, "liveness", None),
    )


def default_model_for(graph: Any) -> Callable[[Chat], Awaitable[Model]]:
    """The model a chat names, from the graph's registry (the default for ``None``). A
    chat's ``model`` is only ever a configured name: never a spec, never imported."""
    registry: ModelRegistry = graph.models

    async def model_for(chat: Chat) -> Model:
        return await registry.model(chat.model)

    return model_for


def install_chatd(
    graph: Any,
    *,
    model_for: ModelFor | None = None,
    instructions: Instructions | None = None,
    dialer: Dialer | None = None,
    mcp_cache: McpToolCache | None = None,
    register: bool = True,
) -> ChatWorker:
    """Build the chat worker from ``graph``; with ``register`` it is appended to
    ``graph.extras["background"]`` (run by the server) and kept as
    ``graph.extras["chat_worker"]``. Instruction files and workspace MCP discovery are on
    by default (bounded by ``instruction_lookup_timeout_s`` / ``mcp_discovery_timeout_s``);
    the MCP tool cache is process-wide (``worker.mcp_cache``)."""
    settings = graph.settings
    deps = chatd_deps(graph, dialer=dialer)
    runner = TurnRunner(
        deps,
        model_for=model_for or default_model_for(graph),
        instructions=instructions
        or InstructionFiles(clock=deps.clock, timeout_s=settings.instruction_lookup_timeout_s),
        mcp=McpDiscovery(
            mcp_cache or McpToolCache(),
            clock=deps.clock,
            timeout_s=settings.mcp_discovery_timeout_s,
            first_wait_s=settings.mcp_first_call_wait_s,
            connect_timeout_s=settings.mcp_server_connect_timeout_s,
            metrics=deps.metrics,
        ),
        longchat=longchat_of(graph),
        titles=AutoTitler(deps, registry=getattr(graph, "models", None)),
    )
    worker = ChatWorker(
        deps,
        runner,
        binding_store=StoreBinding(deps.chats, graph.agents, metrics=deps.metrics),
        poll_s=settings.worker_poll_s,
        max_claim=settings.worker_max_claim,
        heartbeat_s=settings.heartbeat_s,
        stale_after_s=settings.stale_after_s,
        stale_sweep_s=settings.stale_sweep_s,
        validation_delay_s=settings.dial_validation_delay_s,
        dial_timeout_s=settings.dial_timeout_s,
        chat_idle_s=settings.worker_chat_idle_s,
    )
    liveness = getattr(graph, "liveness", None)
    if liveness is not None:  # a silent agent's cached connections go at once
        liveness.add_listener(worker.on_agent_down)
    if register:
        graph.extras.setdefault("background", []).append(worker.run)
        graph.extras["chat_worker"] = worker
    return worker
