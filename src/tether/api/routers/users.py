"""Users and API tokens."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from tether.api.auth import AdminUser, CurrentUser, graph_of
from tether.api.limits import Name
from tether.api.schemas import UserOut

router = APIRouter(prefix="/api/v1/users", tags=["users"])


class CreateUser(BaseModel):
    name: Name
    role: Literal["admin", "member"] = "member"


class UserWithToken(BaseModel):
    user: UserOut
    token: str


@router.get("/me")
async def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)


@router.get("")
async def list_users(request: Request, _: AdminUser) -> list[UserOut]:
    return [UserOut.of(u) for u in await graph_of(request).users.list_users()]


@router.post("", status_code=201)
async def create_user(request: Request, body: CreateUser, _: AdminUser) -> UserWithToken:
    users = graph_of(request).users
    user = await users.create_user(body.name, body.role)
    token, _tok = await users.create_token(user.id, "default")
    return UserWithToken(user=UserOut.of(user), token=token)
