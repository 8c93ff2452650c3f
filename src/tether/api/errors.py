"""Errors map to HTTP in one place, by class: ``{code, message, details}`` bodies.

Every error the API answers has this shape: tether errors (their ``status_code``),
request validation (400 ``invalid_input``), Starlette's own HTTP errors (unknown route,
method not allowed, unparsable body), an exhausted database pool (503 ``overloaded``, with
``Retry-After``: overload is not a server bug) and, last, any unexpected exception (500
``internal``, logged)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether.errors import Overloaded, TetherError

# Starlette's HTTP errors (raised before a route runs) under tether's codes.
_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def error_response(exc: TetherError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TetherError)
    async def _tether(_: Request, exc: TetherError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_path(tuple(e.get("loc", ()))), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            {
                "code": "invalid_input",
                "message": f"{first['field']}: {first['message']}",
                "details": {"field": first["field"], "errors": errors},
            },
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code if 400 <= exc.status_code < 600 else 500
        code = _HTTP_CODES.get(status, "invalid_input" if status < 500 else "internal")
        return JSONResponse(
            {"code": code, "message": str(exc.detail), "details": {}},
            status_code=status,
            headers=exc.headers,
        )

    @app.exception_handler(PoolTimeout)
    async def _overloaded(_: Request, exc: PoolTimeout) -> JSONResponse:
        response = error_response(Overloaded())
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server logs the traceback.
        return JSONResponse(
            {"code": "internal", "message": "internal server error", "details": {}},
            status_code=500,
        )
