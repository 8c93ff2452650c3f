"""An exhausted database pool (every connection busy past the pool timeout, e.g. a burst of
1,000 requests in bench/openloop.py) answers a typed 503 ``overloaded`` with Retry-After,
never a 500 ``internal``."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tether.api.errors import install_error_handlers


async def test_pool_timeout_is_a_typed_503() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/busy")
    async def busy() -> None:
        raise PoolTimeout("QueuePool limit of size 5 overflow 10 reached")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/busy")
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "overloaded"
    assert r.headers["retry-after"] == "1"
