"""The OpenAPI document: every status the API can answer is in it.

Error statuses are added in one place, to every operation, with the one error body all
of them share (:class:`ErrorOut`): 400 (invalid input, including request validation —
FastAPI's default 422 entry is dropped because the API never answers 422), 401, 403, 404,
409, 413 (body over the limit), 500, 502 and 504 (the agent or a provider failed or timed
out). Routes added later are covered without per-route declarations."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorOut(BaseModel):
    """The body of every error answer."""

    code: str
    message: str
    details: dict[str, Any]
    remediation: str | None = None


ERROR_STATUSES: dict[int, str] = {
    400: "Invalid input (the body, a parameter, or a value the server or agent refused)",
    401: "Missing or unknown API token",
    403: "Not allowed for this user",
    404: "Not found (also for other users' objects)",
    409: "Conflict: the object changed meanwhile, is busy, or is in the wrong state",
    413: "The request body is over the size limit",
    500: "Internal error (a bug, or a workspace backend failure)",
    502: "The workspace agent or the language model provider failed",
    504: "The operation did not finish within its deadline",
}

_REF = "#/components/schemas/ErrorOut"


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    error = {"application/json": {"schema": {"$ref": _REF}}}
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(str(status), {"description": description, "content": error})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
