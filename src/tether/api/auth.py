"""Authentication: every API route needs ``Authorization: Bearer <api token>`` (or the web
UI's session cookie, :mod:`tether.api.websession`); each request
checks the token (revoked, expired, disabled user → 401 at once, see
:mod:`tether.api.revocation`), from a short-lived cache that identity events empty
(:mod:`tether.api.tokencache`; one process only, unless opted in across replicas)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tether.api.deps import TokenAuthDep
from tether.domain.user import User
from tether.errors import Forbidden, Unauthorized


async def current_user(request: Request, authenticate: TokenAuthDep) -> User:
    from tether.api import websession  # it builds on this module

    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    cookie = request.cookies.get(websession.COOKIE, "") if not value else ""
    if cookie:  # the web UI's session (mutating requests need its CSRF token)
        websession.check_csrf(request, cookie)
        token, scheme = cookie, "bearer"
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API token: send Authorization: Bearer <token>")
    user, api_token = await authenticate(token.strip())
    if api_token.name == websession.LINK_TOKEN_NAME:
        raise Unauthorized("a sign-in link only signs in to the web UI")
    # streams opened by this request end when this token stops authenticating
    request.state.auth_user_id = user.id
    request.state.auth_token_id = api_token.id
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("only admins can do this")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
