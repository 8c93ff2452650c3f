"""``GET /metrics`` (Prometheus text format) on the API, for admins only, and — with the
``metrics_bind`` setting — the same page without authentication on a separate listener meant
for a private scrape network.

The gauges that describe shared state (the database pool, the queue) are read at scrape
time: two ``COUNT`` queries per scrape, nothing on the hot paths."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, Response
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Receive, Scope, Send

from tether.api.auth import AdminUser
from tether.api.deps import EngineDep, MetricsDep
from tether.cancellation import cancel_and_wait
from tether.db import tables as t
from tether.db.engine import reading
from tether.errors import TetherError
from tether.httpparser import uvicorn_http
from tether.observability.metrics import Metrics

if TYPE_CHECKING:
    from tether.wiring import Graph

log = logging.getLogger("tether.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STOP_TIMEOUT_S = 5.0

router = APIRouter()


async def refresh(metrics: Metrics, engine: AsyncEngine) -> None:
    """Read the scrape-time gauges (a failure leaves the last values and is logged)."""
    metrics.loop_tasks.set(len(asyncio.all_tasks()))
    pool = engine.sync_engine.pool
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checked_out) and callable(size):
        metrics.pool(int(checked_out()), int(size()))
    try:
        async with reading(engine) as conn:
            pending = await conn.scalar(
                sa.select(sa.func.count()).select_from(t.chats).where(t.chats.c.status == "pending")
            )
            queued = await conn.scalar(
                sa.select(sa.func.count()).select_from(t.chat_queued_messages)
            )
    except Exception as exc:
        log.warning("reading the queue depth for /metrics failed: %s", exc)
        return
    metrics.queue(int(pending or 0), int(queued or 0))


async def render(metrics: Metrics, engine: AsyncEngine) -> bytes:
    await refresh(metrics, engine)
    return bytes(metrics.render())


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(registry: MetricsDep, engine: EngineDep, _: AdminUser) -> Response:
    """tether's Prometheus metrics (admins only; see ``metrics_bind`` for a scrape port)."""
    return Response(await render(registry, engine), media_type=CONTENT_TYPE)


class MetricsApp:
    """The bare ASGI app of the ``metrics_bind`` listener: ``GET /metrics``, 404 else."""

    def __init__(self, metrics: Metrics, engine: AsyncEngine) -> None:
        self.metrics = metrics
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 404, b"not found\n", "text/plain"
        else:
            status, body, ctype = 200, await render(self.metrics, self.engine), CONTENT_TYPE
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def parse_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise TetherError(f"metrics_bind must be host:port, not {value!r}")
    return host.strip("[]"), int(port)


async def serve_metrics(graph: Graph) -> None:
    """Serve :class:`MetricsApp` on ``settings.metrics_bind`` until cancelled."""
    bind = graph.settings.metrics_bind
    if not bind:  # background_jobs (tether/server.py) runs this only when it is set
        raise TetherError("metrics_bind is not set")
    host, port = parse_bind(bind)
    config = uvicorn.Config(
        MetricsApp(graph.metrics, graph.engine),
        host=host,
        port=port,
        log_level="warning",
        http=uvicorn_http(graph.settings.http_parser),
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="metrics-listener")
    try:
        await asyncio.shield(task)
    finally:  # cancelled with the server: close the listener before going
        server.should_exit = True
        await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        await cancel_and_wait(task, timeout=STOP_TIMEOUT_S)  # a listener that would not stop
