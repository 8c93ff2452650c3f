"""The FastAPI application. Resources come from the :class:`~tether.wiring.Graph` built in
the lifespan owner (``tether.server``); routes reach the parts they use through the typed
dependencies of :mod:`tether.api.deps` (the graph sits on ``app.state`` for them only)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from tether import __version__
from tether.api import agent_session, ui, websession
from tether.api import metrics as metrics_endpoint
from tether.api.errors import install_error_handlers
from tether.api.guard import RequestGuard
from tether.api.openapi import install_openapi
from tether.api.routers import (
    chat_config,
    chats,
    chatwatch,
    compaction,
    models,
    templates,
    usage,
    users,
    workspaces,
)
from tether.api.watchpoll import ChatWatchPoller
from tether.observability.logs import RequestIds

if TYPE_CHECKING:  # the graph's type only: tether.wiring imports most of tether
    from tether.wiring import Graph

log = logging.getLogger("tether.api")

BackgroundJob = Callable[[], Awaitable[None]]


def create_app(graph: Graph, *, background: list[BackgroundJob] | None = None) -> FastAPI:
    """Build the app. ``background`` jobs (provisioner, chat workers) run for the app's
    lifetime in one task group and are cancelled at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_guard(job)) for job in background or []]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            poller = graph.extras.get("chat_watch_poller")  # made by the first watch stream
            if isinstance(poller, ChatWatchPoller):
                await poller.aclose()

    app = FastAPI(title="tether", version=__version__, lifespan=lifespan)
    app.state.graph = graph
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=graph.settings.api_max_body_bytes,
        message_max_body_bytes=graph.settings.chat_message_max_body_bytes,
    )
    app.add_middleware(RequestIds)  # outermost: every response and log line has its id

    @app.get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(users.router)
    app.include_router(templates.router)
    app.include_router(workspaces.router)
    app.include_router(chats.router)
    app.include_router(compaction.router)
    app.include_router(compaction.me_router)
    app.include_router(chatwatch.router)
    app.include_router(models.router)
    app.include_router(agent_session.router)
    app.include_router(metrics_endpoint.router)
    app.include_router(websession.router)
    app.include_router(ui.router)
    app.include_router(chat_config.router)
    app.include_router(usage.router)
    extra = graph.extras.get("routers", [])
    for router in extra:
        app.include_router(router)
    return app


async def _guard(job: BackgroundJob) -> None:
    """Run a background job; log (not swallow silently) a crash."""
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background job crashed")
