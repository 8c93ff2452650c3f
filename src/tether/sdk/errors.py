"""Errors raised by the SDK.

    ApiError                (status, code, message, details) — the server answered with an error
    ├── ServerUnreachable   no connection to the server (refused, DNS, reset)
    └── WaitTimeout         a client-side wait (build, agent readiness) ran out of time

``code`` is the server's stable machine code (``not_found``, ``workspace_stopped`` …), or one of
``server_unreachable`` / ``timeout`` / ``http_<status>`` for errors the server did not describe.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer of the tether API (or a failure to get one)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        super().__init__(message)

    @property
    def field(self) -> str | None:
        """The offending input field, when the server named one."""
        value = self.details.get("field")
        return str(value) if value else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class ServerUnreachable(ApiError):
    """The tether server could not be reached at all."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            0,
            "server_unreachable",
            f"cannot reach the tether server at {url}: {reason} — is `tether server` running?",
            {"url": url},
        )


class WaitTimeout(ApiError):
    """Waiting on the client side for something to happen ran out of time."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "timeout", message)
