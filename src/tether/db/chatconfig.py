"""Admin chat settings (``chat_config``): the template allowlist and the system and user
prompts applied to every chat (docs/behaviour.md §5.8). One JSON value per key; a missing
key is its default (empty allowlist = every template, empty prompt = none)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.channels import CHAT_CONFIG
from tether.clock import Clock
from tether.db.engine import reading
from tether.db.pubsub import EventBus
from tether.db.tables import chat_config
from tether.errors import Conflict

TEMPLATE_ALLOWLIST = "template_allowlist"
SYSTEM_PROMPT = "system_prompt"
USER_PROMPT = "user_prompt"


@dataclass(frozen=True)
class ChatConfig:
    """The chat settings as of one read."""

    template_allowlist: frozenset[uuid.UUID] = field(default_factory=frozenset)
    system_prompt: str = ""
    user_prompt: str = ""

    def allows(self, template_id: uuid.UUID) -> bool:
        """An empty allowlist allows every template (CW-24)."""
        return not self.template_allowlist or template_id in self.template_allowlist


def _config(values: dict[str, Any]) -> ChatConfig:
    return ChatConfig(
        template_allowlist=frozenset(
            uuid.UUID(str(v)) for v in values.get(TEMPLATE_ALLOWLIST) or []
        ),
        system_prompt=str(values.get(SYSTEM_PROMPT) or ""),
        user_prompt=str(values.get(USER_PROMPT) or ""),
    )


CHAT_CONFIG_CHANNEL = CHAT_CONFIG  # tether/channels.py


class ChatConfigStore:
    """The settings table. With a ``bus``, every write is announced on
    :data:`CHAT_CONFIG_CHANNEL`, so chat workers drop their cached copy
    (``chatd/configcache.py``) on this and every other replica."""

    def __init__(self, engine: AsyncEngine, clock: Clock, bus: EventBus | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self._bus = bus

    async def get(self) -> ChatConfig:
        """All settings in one query."""
        async with reading(self._engine) as conn:
            rows = (await conn.execute(sa.select(chat_config))).all()
        return _config({row.key: row.value for row in rows})

    async def _put(self, key: str, value: Any) -> None:
        now = self._clock.now()
        for _ in range(2):  # update, or insert when the key is new (portable upsert)
            async with self._engine.begin() as conn:
                updated = await conn.execute(
                    chat_config.update()
                    .where(chat_config.c.key == key)
                    .values(value=value, updated_at=now)
                )
                if updated.rowcount:
                    return await self._changed(key)
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        chat_config.insert().values(key=key, value=value, updated_at=now)
                    )
                return await self._changed(key)
            except IntegrityError:
                continue  # a concurrent writer inserted it first: update instead
        raise Conflict(f"could not write the chat setting {key}; try again")

    async def value(self, key: str) -> Any:
        """One setting's stored JSON (None when unset)."""
        async with reading(self._engine) as conn:
            return await conn.scalar(sa.select(chat_config.c.value).where(chat_config.c.key == key))

    async def set_value(self, key: str, value: Any) -> None:
        await self._put(key, value)

    async def _changed(self, key: str) -> None:
        if self._bus is not None:
            await self._bus.publish(CHAT_CONFIG_CHANNEL, {"changed": key})

    async def set_template_allowlist(self, template_ids: list[uuid.UUID]) -> ChatConfig:
        unique = sorted({str(t) for t in template_ids})
        await self._put(TEMPLATE_ALLOWLIST, unique)
        return await self.get()

    async def set_system_prompt(self, text: str) -> ChatConfig:
        await self._put(SYSTEM_PROMPT, text)
        return await self.get()

    async def set_user_prompt(self, text: str) -> ChatConfig:
        await self._put(USER_PROMPT, text)
        return await self.get()
