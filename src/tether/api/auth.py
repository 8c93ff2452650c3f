"""Authentication: every API route needs ``Authorization: Bearer <api token>``; each request
checks the token (revoked, expired, disabled user → 401 at once, see
:mod:`tether.api.revocation`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from tether.errors import Forbidden, Unauthorized
from tether.workspaces.models import User


def graph_of(request: Request) -> Any:
    return request.app.state.graph


async def current_user(request: Request) -> User:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API token: send Authorization: Bearer <token>")
    user, api_token = await graph_of(request).users.authenticate_token(token.strip())
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
