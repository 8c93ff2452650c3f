"""Browser sessions for the web UI: an API token kept in an HttpOnly cookie.

- ``POST /api/v1/session`` exchanges an API token (typed in, or a one-time sign-in link's)
  for a **session token**: a new API token named :data:`SESSION_TOKEN_NAME` that expires
  after ``ui_session_ttl_s``. It is set as the ``tether_session`` cookie (HttpOnly,
  SameSite=Strict, Secure over https) and never shown to scripts. A sign-in link token is
  deleted on use (one-time).
- ``GET /api/v1/session`` tells the page who is signed in and its CSRF token.
- ``DELETE /api/v1/session`` signs out: the session token is deleted server-side (open
  streams of it end, :mod:`tether.api.revocation`) and the cookie cleared.
- ``POST /api/v1/session/links`` (bearer) creates a one-time sign-in link token, valid for
  ``ui_link_ttl_s`` and good for nothing but this exchange (``tether ui`` prints it).

A request authenticated by the cookie that changes anything (not GET/HEAD/OPTIONS) must
carry ``X-CSRF-Token``: a value derived from the session token that only a page able to
read ``GET /api/v1/session`` (same origin) can learn. See :func:`check_csrf`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from tether.api.auth import CurrentUser
from tether.api.deps import BusDep, ClockDep, SettingsDep, UserStoreDep
from tether.api.revocation import publish_revoked
from tether.api.schemas import UserOut
from tether.errors import Forbidden, NotFound, Unauthorized

router = APIRouter(prefix="/api/v1/session", tags=["session"])

COOKIE = "tether_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TOKEN_NAME = "web session"
LINK_TOKEN_NAME = "web sign-in link"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: derived, so nothing more is stored. Knowing it requires
    knowing the session token (or reading ``GET /api/v1/session`` from the same origin)."""
    return hashlib.sha256(b"tether-csrf\x00" + session_token.encode()).hexdigest()


def check_csrf(request: Request, session_token: str) -> None:
    """Refuse a cookie-authenticated mutating request without the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(session_token).encode()):
        raise Forbidden("missing or wrong X-CSRF-Token for a request signed in by cookie")


class SignIn(BaseModel):
    token: str = Field(min_length=1, max_length=512)


class SessionOut(BaseModel):
    user: UserOut
    csrf_token: str
    expires_at: datetime | None


class LinkOut(BaseModel):
    url: str  # from the server's public URL
    path: str  # the same link relative to the server (a client joins it to its own URL)
    expires_at: datetime | None


@router.post("", status_code=201)
async def sign_in(
    request: Request,
    users: UserStoreDep,
    clock: ClockDep,
    settings: SettingsDep,
    body: SignIn,
    response: Response,
) -> SessionOut:
    _same_origin(request)
    user, given = await users.authenticate_token(body.token.strip())
    if given.name == LINK_TOKEN_NAME:  # one-time: used up now (a racing second use loses)
        try:
            await users.delete_token(given.id, user_id=user.id)
        except NotFound:
            raise Unauthorized("this sign-in link was already used") from None
    expires_at = clock.now() + timedelta(seconds=settings.ui_session_ttl_s)
    secret, _ = await users.create_token(user.id, SESSION_TOKEN_NAME, expires_at)
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(settings.ui_session_ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return SessionOut(user=UserOut.of(user), csrf_token=csrf_token(secret), expires_at=expires_at)


def _same_origin(request: Request) -> None:
    """A sign-in posted by another site's page is refused (login CSRF)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden("sign-in from another origin")


def _session_secret(request: Request) -> str:
    secret = request.cookies.get(COOKIE, "")
    if not secret or request.headers.get("authorization"):
        raise Unauthorized("not signed in to the web UI")
    return secret


@router.get("")
async def show(request: Request, users: UserStoreDep, user: CurrentUser) -> SessionOut:
    secret = _session_secret(request)
    token = await users.get_token(request.state.auth_token_id)
    return SessionOut(
        user=UserOut.of(user), csrf_token=csrf_token(secret), expires_at=token.expires_at
    )


@router.delete("", status_code=204)
async def sign_out(
    request: Request, users: UserStoreDep, bus: BusDep, user: CurrentUser
) -> Response:
    _session_secret(request)
    token_id = request.state.auth_token_id
    await users.delete_token(token_id, user_id=user.id)
    await publish_revoked(bus, user_id=user.id, token_id=token_id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/links", status_code=201)
async def create_link(
    users: UserStoreDep, clock: ClockDep, settings: SettingsDep, user: CurrentUser
) -> LinkOut:
    expires_at = clock.now() + timedelta(seconds=settings.ui_link_ttl_s)
    secret, _ = await users.create_token(user.id, LINK_TOKEN_NAME, expires_at)
    # the fragment never reaches a server log or a Referer header
    path = f"/ui/#/signin?token={secret}"
    return LinkOut(url=settings.server_url() + path, path=path, expires_at=expires_at)
