"""Users and their API tokens.

Tokens are shown once, at creation; only their SHA-256 (:func:`tether.ids.hash_token`) is
stored, so a leaked database does not leak credentials. A token authenticates only while it
exists, has not expired, and its user is neither disabled nor deleted: every request checks
all three (one indexed query, or the API's short-lived cache of it that revocation events
empty, api/tokencache.py), so revoking, expiring or disabling takes effect at once.
``last_used_at`` is coarse: written at most once per ``last_used_granularity_s`` per token,
so authentication does not cost a write per request.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.engine import reading
from tether.db.fastexec import FastStatement
from tether.db.prebuilt import bound
from tether.db.tables import api_tokens, chat_messages, chat_queued_messages, chats, users
from tether.domain.user import Role, User
from tether.errors import Conflict, InvalidInput, NotFound, Unauthorized
from tether.ids import hash_token, new_id, new_token

ROLES = tuple(r.value for r in Role)
USER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
TOKEN_PREFIX = "tt"

# Built once (db/prebuilt.py): an open stream checks its token with it.
_TOKEN_VALID = (
    sa.select(api_tokens.c.expires_at, users.c.disabled_at, users.c.deleted_at)
    .join(users, api_tokens.c.user_id == users.c.id)
    .where(api_tokens.c.id == bound(api_tokens.c.id))
)
_TOKEN_VALID_FAST = FastStatement(_TOKEN_VALID)  # db/fastexec.py


@dataclass(frozen=True)
class ApiToken:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = None


def _user(row: Any) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=_utc(row.created_at),
        disabled_at=as_utc(row.disabled_at),
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        created_at=_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        last_used_at=as_utc(row.last_used_at),
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


# Every API request runs this; built once (constructing it cost ~0.25 ms a request).
_TOKEN_QUERY = (
    sa.select(
        users,
        api_tokens.c.id.label("token_id"),
        api_tokens.c.name.label("token_name"),
        api_tokens.c.created_at.label("token_created_at"),
        api_tokens.c.expires_at.label("token_expires_at"),
        api_tokens.c.last_used_at.label("token_last_used_at"),
    )
    .join(api_tokens, api_tokens.c.user_id == users.c.id)
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
)


class UserStore:
    """Users and API tokens (SQLAlchemy Core; one short transaction per call)."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, *, last_used_granularity_s: float = 60.0
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._last_used_granularity = timedelta(seconds=last_used_granularity_s)

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

    async def get_user(self, user_id: uuid.UUID, *, include_deleted: bool = True) -> User:
        """The user with ``user_id`` (a deleted one too, unless ``include_deleted`` is
        False: workspaces and builds still name their owner); :class:`NotFound` if none."""
        where = users.c.id == user_id
        if not include_deleted:
            where = sa.and_(where, users.c.deleted_at.is_(None))
        return await self._one(where)

    async def get_user_by_name(self, name: str) -> User:
        """The (not deleted) user called ``name``; :class:`NotFound` if there is none."""
        return await self._one(sa.and_(users.c.name == name, users.c.deleted_at.is_(None)))

    async def _one(self, where: sa.ColumnElement[bool]) -> User:
        async with reading(self._engine) as conn:
            row = (await conn.execute(sa.select(users).where(where))).first()
        if row is None:
            raise NotFound("user not found")
        return _user(row)

    async def list_users(self) -> list[User]:
        """All users (not deleted ones), by name."""
        query = sa.select(users).where(users.c.deleted_at.is_(None)).order_by(users.c.name)
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return [_user(r) for r in rows]

    async def count_users(self) -> int:
        async with reading(self._engine) as conn:
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
            live = sa.select(users.c.id).where(users.c.id == user_id, users.c.deleted_at.is_(None))
            if await conn.scalar(live) is None:
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
        """The user owning ``token``; :class:`Unauthorized` if it is unknown, expired,
        revoked, or its user is disabled or deleted."""
        user, _ = await self.authenticate_token(token)
        return user

    async def authenticate_token(self, token: str) -> tuple[User, ApiToken]:
        """Like :meth:`authenticate`, also returning the token (for streams that must end
        when it is revoked). Records ``last_used_at`` coarsely."""
        async with reading(self._engine) as conn:
            row = (await conn.execute(_TOKEN_QUERY, {"token_hash": hash_token(token)})).first()
        # one message for every refusal: a caller learns nothing about which check failed
        if row is None or row.disabled_at is not None or row.deleted_at is not None:
            raise Unauthorized("invalid API token")
        now = self._clock.now()
        expires_at = as_utc(row.token_expires_at)
        if expires_at is not None and expires_at <= now:
            raise Unauthorized("API token expired")
        api_token = ApiToken(
            id=row.token_id,
            user_id=row.id,
            name=row.token_name,
            created_at=_utc(row.token_created_at),
            expires_at=expires_at,
            last_used_at=as_utc(row.token_last_used_at),
        )
        return _user(row), await self.record_use(api_token, now)

    async def record_use(self, token: ApiToken, now: datetime) -> ApiToken:
        """Write ``last_used_at`` if the last write is older than the granularity; returns
        the token as it now stands (a cached token keeps the time it last wrote)."""
        last_used = token.last_used_at
        if last_used is not None and now - last_used < self._last_used_granularity:
            return token
        await self._touch(token.id, now)
        return replace(token, last_used_at=now)

    async def _touch(self, token_id: uuid.UUID, now: datetime) -> None:
        # guarded: concurrent requests of one token write once per granularity window
        stale = now - self._last_used_granularity
        async with self._engine.begin() as conn:
            await conn.execute(
                api_tokens.update()
                .where(
                    api_tokens.c.id == token_id,
                    sa.or_(api_tokens.c.last_used_at.is_(None), api_tokens.c.last_used_at <= stale),
                )
                .values(last_used_at=now)
            )

    async def token_valid(self, token_id: uuid.UUID) -> datetime | bool:
        """Whether a token still authenticates (exists, user enabled, not expired). Returns
        its expiry when it has one (a stream can wake exactly then), else ``True``."""
        async with reading(self._engine) as conn:
            row = await _TOKEN_VALID_FAST.first(conn, {"p_id": token_id})
        if row is None or row.disabled_at is not None or row.deleted_at is not None:
            return False
        expires_at = as_utc(row.expires_at)
        if expires_at is None:
            return True
        return expires_at if expires_at > self._clock.now() else False

    async def list_tokens(self, user_id: uuid.UUID) -> list[ApiToken]:
        """The tokens of ``user_id``, oldest first (never their plaintext)."""
        query = (
            sa.select(api_tokens)
            .where(api_tokens.c.user_id == user_id)
            .order_by(api_tokens.c.created_at, api_tokens.c.id)
        )
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return [_token(r) for r in rows]

    async def get_token(self, token_id: uuid.UUID) -> ApiToken:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id))
            ).first()
        if row is None:
            raise NotFound("token not found")
        return _token(row)

    async def delete_token(self, token_id: uuid.UUID, *, user_id: uuid.UUID | None = None) -> None:
        """Revoke a token (of ``user_id``, when given); :class:`NotFound` if there is none."""
        where = [api_tokens.c.id == token_id]
        if user_id is not None:
            where.append(api_tokens.c.user_id == user_id)
        async with self._engine.begin() as conn:
            result = await conn.execute(api_tokens.delete().where(*where))
        if result.rowcount == 0:
            raise NotFound("token not found")

    async def set_disabled(self, user_id: uuid.UUID, disabled: bool) -> User:
        """Disable (every token gets 401 at once) or re-enable a user."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                users.update()
                .where(users.c.id == user_id, users.c.deleted_at.is_(None))
                .values(disabled_at=self._clock.now() if disabled else None)
            )
        if result.rowcount == 0:
            raise NotFound("user not found")
        return await self.get_user(user_id, include_deleted=False)

    async def mark_deleted(self, user_id: uuid.UUID) -> None:
        """Delete a user: the row stays (workspaces and builds refer to it) but is gone from
        every lookup, disabled, and all its tokens are removed."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                users.update()
                .where(users.c.id == user_id, users.c.deleted_at.is_(None))
                .values(deleted_at=now, disabled_at=sa.func.coalesce(users.c.disabled_at, now))
            )
            if result.rowcount == 0:
                raise NotFound("user not found")
            await conn.execute(api_tokens.delete().where(api_tokens.c.user_id == user_id))

    async def purge_chats(self, user_id: uuid.UUID) -> int:
        """Delete every chat of ``user_id`` with its messages; returns how many chats."""
        owned = sa.select(chats.c.id).where(chats.c.owner_id == user_id)
        async with self._engine.begin() as conn:
            for table in (chat_queued_messages, chat_messages):
                await conn.execute(table.delete().where(table.c.chat_id.in_(owned)))
            result = await conn.execute(chats.delete().where(chats.c.owner_id == user_id))
        return int(result.rowcount or 0)
