"""``GET /metrics`` (Prometheus text format) on the API, for admins only, and — with the
``metrics_bind`` setting — the same page without authentication on a separate listener meant
for a private scrape network.

The gauges that describe shared state (the database pool, the queue) are read at scrape
time: two ``COUNT`` queries per scrape, nothing on the hot paths."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope, Send

from tether.api.auth import AdminUser, graph_of
from tether.db import tables as t
from tether.errors import TetherError
from tether.observability.metrics import Metrics

log = logging.getLogger("tether.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STOP_TIMEOUT_S = 5.0

router = APIRouter()


async def refresh(graph: Any) -> None:
    """Read the scrape-time gauges (a failure leaves the last values and is logged)."""
    metrics: Metrics = graph.metrics
    metrics.loop_tasks.set(len(asyncio.all_tasks()))
    pool = graph.engine.sync_engine.pool
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checked_out) and callable(size):
        metrics.pool(int(checked_out()), int(size()))
    try:
        async with graph.engine.connect() as conn:
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


async def render(graph: Any) -> bytes:
    await refresh(graph)
    return bytes(graph.metrics.render())


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, _: AdminUser) -> Response:
    """tether's Prometheus metrics (admins only; see ``metrics_bind`` for a scrape port)."""
    return Response(await render(graph_of(request)), media_type=CONTENT_TYPE)


class MetricsApp:
    """The bare ASGI app of the ``metrics_bind`` listener: ``GET /metrics``, 404 else."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 404, b"not found\n", "text/plain"
        else:
            status, body, ctype = 200, await render(self.graph), CONTENT_TYPE
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


async def serve_metrics(graph: Any) -> None:
    """Serve :class:`MetricsApp` on ``settings.metrics_bind`` until cancelled."""
    host, port = parse_bind(graph.settings.metrics_bind)
    config = uvicorn.Config(
        MetricsApp(graph), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="metrics-listener")
    try:
        await asyncio.shield(task)
    finally:  # cancelled with the server: close the listener before going
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
