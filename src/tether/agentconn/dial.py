"""Dialing an agent: build an :class:`AgentClient` and prove it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tether.agentconn.client import AgentClient
from tether.errors import AgentTransportError


async def dial(
    address: str,
    secret: str,
    *,
    headers: Mapping[str, str] | None = None,
    connect_timeout: float,
    request_timeout: float,
    exec_margin: float = 5.0,
    down: asyncio.Event | None = None,
) -> AgentClient:
    """A client whose agent just answered ``GET /health``.

    A dead address fails fast (connection refused); one that accepts but never answers fails
    after ``connect_timeout`` + ``request_timeout`` at most. Raises
    :class:`~tether.errors.AgentTransportError` or :class:`~tether.errors.AgentRequestFailed`
    (e.g. 401 for a wrong secret), or :class:`~tether.errors.AgentUnreachable` when ``down``
    is set meanwhile; the client is closed on failure.
    """
    client = AgentClient(
        address,
        secret,
        headers=headers,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        exec_margin=exec_margin,
        down=down,
    )
    return await proven(client, connect_timeout=connect_timeout, request_timeout=request_timeout)


async def proven(
    client: AgentClient, *, connect_timeout: float, request_timeout: float
) -> AgentClient:
    """``client`` once its agent answered ``GET /health`` (the errors of :func:`dial`);
    on failure ``client`` is closed (a shared handle: given back)."""
    try:
        try:
            async with asyncio.timeout(connect_timeout + request_timeout):
                await client.health()
        except TimeoutError as exc:  # belt and braces: httpx's own timeouts should fire first
            raise AgentTransportError(f"agent at {client.address} did not answer in time") from exc
    except BaseException:
        await asyncio.shield(client.aclose())
        raise
    return client
