"""``tether server``: build the graph, bootstrap the first admin, serve the API, run the
provisioner (and chat workers) in the same process unless switched off."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import uvicorn

from tether.agentconn.liveness import follow_liveness
from tether.api.app import BackgroundJob, create_app
from tether.api.metrics import serve_metrics
from tether.eventloop import running_loop_name
from tether.gctune import tune_collector
from tether.httpparser import parser_choice, uvicorn_http
from tether.observability.loopwatch import LoopWatch
from tether.settings import Settings
from tether.wiring import Graph, graph_context

log = logging.getLogger("tether.server")


def write_cli_config(path: Path, *, url: str, token: str) -> None:
    """Write the CLI config (mode 0600 from the start: the token never sits world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh)
    os.chmod(path, 0o600)


async def bootstrap(graph: Graph) -> str | None:
    """On first start create the admin and write its token to the CLI config."""
    if await graph.users.count_users() > 0:
        return None
    admin = await graph.users.create_user(graph.settings.bootstrap_admin, "admin")
    token, _ = await graph.users.create_token(admin.id, "cli")
    write_cli_config(graph.settings.cli_config, url=graph.settings.server_url(), token=token)
    log.info("created admin %r; CLI config written to %s", admin.name, graph.settings.cli_config)
    return token


def background_jobs(graph: Graph) -> list[BackgroundJob]:
    jobs: list[BackgroundJob] = [functools.partial(follow_liveness, graph.liveness, graph.bus)]
    jobs.append(LoopWatch(graph.metrics).run)  # event-loop lag and GC pauses (/metrics)
    if graph.settings.run_api:
        jobs.append(graph.pings.run)  # agent sessions live in the API
    if graph.settings.run_provisioner:
        jobs.append(graph.provisioner.run)
    if graph.settings.metrics_bind:
        jobs.append(functools.partial(serve_metrics, graph))
    jobs.extend(graph.extras.get("background", []))
    return jobs


async def serve(settings: Settings, *, announce: Callable[[str], None] | None = None) -> None:
    """Serve until stopped; ``announce`` is told, once, the event loop and the HTTP parser
    the server runs on (``tether server`` prints it)."""
    async with graph_context(settings) as graph:
        await bootstrap(graph)
        app = create_app(graph, background=background_jobs(graph))
        tune_collector(settings)  # after the graph and the app are built
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            http=uvicorn_http(settings.http_parser),
            ws="websockets-sansio",
            timeout_graceful_shutdown=5,
        )
        if announce is not None:
            announce(
                f"event loop {running_loop_name()}, "
                f"HTTP parser {parser_choice(settings.http_parser)}"
            )
        await uvicorn.Server(config).serve()
