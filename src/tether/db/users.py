"""Users and their API tokens.

Tokens are shown once, at creation; only their SHA-256 (:func:`tether.ids.hash_token`) is
stored, so a leaked database does not leak credentials.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.tables import api_tokens, users
from tether.errors import Conflict, InvalidInput, NotFound, Unauthorized
from tether.ids import hash_token, new_id, new_token
from tether.workspaces.models import Role, User

ROLES = tuple(r.value for r in Role)
USER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
TOKEN_PREFIX = "tt"


@dataclass(frozen=True)
class ApiToken:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    created_at: datetime
    expires_at: datetime | None


def _user(row: Any) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role), created_at=_utc(row.created_at))


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        created_at=_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
    )


def _utc(value: datetime) -> datetime:
    out = as_utc(value)
    assert out is not None
    return out


def validate_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`InvalidInput`."""
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise InvalidInput(
            "user names are 1-32 characters: a lower-case letter, then letters, digits or '-'",
            field="name",
        )
    return name


class UserStore:
    """Users and API tokens (SQLAlchemy Core; one short transaction per call)."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def create_user(self, name: str, role: Role | str = Role.MEMBER) -> User:
        """Create a user. Raises :class:`InvalidInput` (bad name/role) or :class:`Conflict`
        (name taken)."""
        validate_user_name(name)
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
        user = User(id=new_id(), name=name, role=Role(role), created_at=self._clock.now())
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    users.insert().values(
                        id=user.id, name=user.name, role=user.role.value, created_at=user.created_at
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"a user named {name!r} already exists", field="name") from exc
        return user

    async def get_user(self, user_id: uuid.UUID) -> User:
        """The user with ``user_id``; :class:`NotFound` if there is none."""
        return await self._one(users.c.id == user_id)

    async def get_user_by_name(self, name: str) -> User:
        """The user called ``name``; :class:`NotFound` if there is none."""
        return await self._one(users.c.name == name)

    async def _one(self, where: sa.ColumnElement[bool]) -> User:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(where))).first()
        if row is None:
            raise NotFound("user not found")
        return _user(row)

    async def list_users(self) -> list[User]:
        """All users, by name."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(users).order_by(users.c.name))).all()
        return [_user(r) for r in rows]

    async def count_users(self) -> int:
        async with self._engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(users))
        return int(count or 0)

    async def create_token(
        self, user_id: uuid.UUID, name: str, expires_at: datetime | None = None
    ) -> tuple[str, ApiToken]:
        """Create an API token for ``user_id``; returns ``(plaintext, token)``. The plaintext
        is not stored and cannot be recovered. :class:`NotFound` if the user does not exist."""
        if not name or len(name) > 64:
            raise InvalidInput("token names are 1-64 characters", field="name")
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidInput("expires_at must be timezone-aware", field="expires_at")
        plaintext = new_token(TOKEN_PREFIX)
        token = ApiToken(
            id=new_id(),
            user_id=user_id,
            name=name,
            created_at=self._clock.now(),
            expires_at=as_utc(expires_at),
        )
        async with self._engine.begin() as conn:
            # explicit check: a foreign-key error would not say which constraint failed
            if await conn.scalar(sa.select(users.c.id).where(users.c.id == user_id)) is None:
                raise NotFound("user not found")
            await conn.execute(
                api_tokens.insert().values(
                    id=token.id,
                    user_id=token.user_id,
                    token_hash=hash_token(plaintext),
                    name=token.name,
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                )
            )
        return plaintext, token

    async def authenticate(self, token: str) -> User:
        """The user owning ``token``; :class:`Unauthorized` if it is unknown or expired."""
        query = (
            sa.select(users, api_tokens.c.expires_at.label("token_expires_at"))
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == hash_token(token))
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise Unauthorized("invalid API token")
        expires_at = as_utc(row.token_expires_at)
        if expires_at is not None and expires_at <= self._clock.now():
            raise Unauthorized("API token expired")
        return _user(row)

    async def list_tokens(self, user_id: uuid.UUID) -> list[ApiToken]:
        """The tokens of ``user_id``, oldest first (never their plaintext)."""
        query = (
            sa.select(api_tokens)
            .where(api_tokens.c.user_id == user_id)
            .order_by(api_tokens.c.created_at, api_tokens.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_token(r) for r in rows]

    async def delete_token(self, token_id: uuid.UUID) -> None:
        """Revoke a token; :class:`NotFound` if it does not exist."""
        async with self._engine.begin() as conn:
            result = await conn.execute(api_tokens.delete().where(api_tokens.c.id == token_id))
        if result.rowcount == 0:
            raise NotFound("token not found")
