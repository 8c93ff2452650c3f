"""Users and API tokens.

Admins list, create, disable, enable and delete users and revoke anyone's tokens; every user
lists, creates and revokes their own (``me`` stands for the caller in every path). A member
asking about another user gets 403; a token id that is not the named user's is 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tether.api.auth import AdminUser, CurrentUser
from tether.api.deps import BusDep, ClockDep, UserStoreDep
from tether.api.limits import Name
from tether.api.revocation import publish_revoked
from tether.api.schemas import UserOut
from tether.api.useradmin import UserDeletionDep
from tether.db.pubsub import EventBus
from tether.db.users import ApiToken, UserStore
from tether.domain.user import User
from tether.errors import Conflict, Forbidden, InvalidInput

router = APIRouter(prefix="/api/v1/users", tags=["users"])

MAX_TOKEN_LIFETIME_S = 10 * 365 * 24 * 3600


class CreateUser(BaseModel):
    name: Name
    role: Literal["admin", "member"] = "member"


class UserWithToken(BaseModel):
    user: UserOut
    token: str


class TokenOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        return cls(
            id=t.id,
            user_id=t.user_id,
            name=t.name,
            created_at=t.created_at,
            expires_at=t.expires_at,
            last_used_at=t.last_used_at,
        )


class CreateToken(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    expires_in_s: float | None = Field(
        default=None, gt=0, le=MAX_TOKEN_LIFETIME_S, description="None: never expires."
    )


class TokenWithSecret(BaseModel):
    token: TokenOut
    secret: str  # shown once


class DeletedUser(BaseModel):
    user: UserOut
    data: Literal["keep", "remove"]
    workspaces: dict[str, str]
    chats_interrupted: int
    chats_deleted: int


async def _target(users: UserStore, actor: User, ref: str) -> User:
    """``me``, the caller's own name or id, or (admins only) anyone's."""
    if ref in ("me", actor.name, str(actor.id)):
        return actor
    if not actor.is_admin:
        raise Forbidden("only admins can manage other users")
    try:
        return await users.get_user(uuid.UUID(ref), include_deleted=False)
    except ValueError:
        return await users.get_user_by_name(ref)


@router.get("/me")
async def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)


@router.get("")
async def list_users(users: UserStoreDep, _: AdminUser) -> list[UserOut]:
    return [UserOut.of(u) for u in await users.list_users()]


@router.post("", status_code=201)
async def create_user(users: UserStoreDep, body: CreateUser, _: AdminUser) -> UserWithToken:
    user = await users.create_user(body.name, body.role)
    token, _tok = await users.create_token(user.id, "default")
    return UserWithToken(user=UserOut.of(user), token=token)


@router.get("/{user_ref}")
async def get_user(users: UserStoreDep, user_ref: str, actor: CurrentUser) -> UserOut:
    return UserOut.of(await _target(users, actor, user_ref))


async def _set_disabled(
    users: UserStore, bus: EventBus, actor: User, user_ref: str, disabled: bool
) -> UserOut:
    target = await _target(users, actor, user_ref)
    if target.id == actor.id:
        raise Conflict("admins cannot disable or enable themselves")
    user = await users.set_disabled(target.id, disabled)
    if disabled:
        await publish_revoked(bus, user_id=user.id)
    return UserOut.of(user)


@router.post("/{user_ref}/disable")
async def disable_user(
    users: UserStoreDep, bus: BusDep, user_ref: str, actor: AdminUser
) -> UserOut:
    """Disable a user: every token of theirs gets 401 at once and their streams end."""
    return await _set_disabled(users, bus, actor, user_ref, True)


@router.post("/{user_ref}/enable")
async def enable_user(users: UserStoreDep, bus: BusDep, user_ref: str, actor: AdminUser) -> UserOut:
    return await _set_disabled(users, bus, actor, user_ref, False)


@router.delete("/{user_ref}")
async def remove_user(
    users: UserStoreDep,
    deletion: UserDeletionDep,
    user_ref: str,
    actor: AdminUser,
    data: Annotated[
        Literal["keep", "remove"],
        Query(
            description="keep: stop their workspaces, keep workspaces and chats; remove: "
            "delete their workspaces (files too) and chats. Required: there is no default."
        ),
    ],
) -> DeletedUser:
    target = await _target(users, actor, user_ref)
    report = await deletion.delete_user(actor, target, data)
    return DeletedUser(
        user=UserOut.of(report.user),
        data=report.data,
        workspaces=report.workspaces,
        chats_interrupted=report.chats_interrupted,
        chats_deleted=report.chats_deleted,
    )


@router.get("/{user_ref}/tokens")
async def list_tokens(users: UserStoreDep, user_ref: str, actor: CurrentUser) -> list[TokenOut]:
    target = await _target(users, actor, user_ref)
    return [TokenOut.of(t) for t in await users.list_tokens(target.id)]


@router.post("/{user_ref}/tokens", status_code=201)
async def create_token(
    users: UserStoreDep, clock: ClockDep, user_ref: str, body: CreateToken, actor: CurrentUser
) -> TokenWithSecret:
    """A new token (its secret is shown only in this response)."""
    target = await _target(users, actor, user_ref)
    expires_at = None
    if body.expires_in_s is not None:
        expires_at = clock.now() + timedelta(seconds=body.expires_in_s)
    secret, token = await users.create_token(target.id, body.name, expires_at)
    return TokenWithSecret(token=TokenOut.of(token), secret=secret)


@router.delete("/{user_ref}/tokens/{token_id}", status_code=204)
async def revoke_token(
    users: UserStoreDep, bus: BusDep, user_ref: str, token_id: str, actor: CurrentUser
) -> None:
    """Revoke a token: 401 at once for its requests, and its open streams end."""
    target = await _target(users, actor, user_ref)
    try:
        tid = uuid.UUID(token_id)
    except ValueError:
        raise InvalidInput("token ids are UUIDs", field="token_id") from None
    await users.delete_token(tid, user_id=target.id)
    await publish_revoked(bus, user_id=target.id, token_id=tid)
