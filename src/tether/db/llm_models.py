"""Admin-managed model configs (``llm_models``): name → config document.

The store keeps the document as given (``tether.llm.registry`` validates it); it never
holds a key, only the name of the environment variable that has one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.engine import reading
from tether.db.tables import llm_models
from tether.errors import Conflict, NotFound
from tether.ids import new_id


@dataclass(frozen=True)
class StoredModel:
    name: str
    config: dict[str, Any]
    updated_at: datetime


def _stored(row: Any) -> StoredModel:
    return StoredModel(
        name=row.name,
        config=dict(row.config),
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


class ModelStore:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def list(self) -> list[StoredModel]:
        async with reading(self._engine) as conn:
            rows = await conn.execute(sa.select(llm_models).order_by(llm_models.c.name))
            return [_stored(r) for r in rows]

    async def get(self, name: str) -> StoredModel | None:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(sa.select(llm_models).where(llm_models.c.name == name))
            ).first()
            return _stored(row) if row is not None else None

    async def add(self, name: str, config: dict[str, Any], *, user_id: uuid.UUID) -> StoredModel:
        now = self._clock.now()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    llm_models.insert().values(
                        id=new_id(),
                        name=name,
                        config=config,
                        created_by=user_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(f"a model named {name!r} exists already") from exc
        return StoredModel(name=name, config=config, updated_at=now)

    async def replace(self, name: str, config: dict[str, Any]) -> StoredModel:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                llm_models.update()
                .where(llm_models.c.name == name)
                .values(config=config, updated_at=now)
            )
        if result.rowcount == 0:
            raise NotFound(f"model {name!r} not found")
        return StoredModel(name=name, config=config, updated_at=now)

    async def remove(self, name: str) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(llm_models.delete().where(llm_models.c.name == name))
        if result.rowcount == 0:
            raise NotFound(f"model {name!r} not found")
