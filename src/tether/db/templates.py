"""Template store: templates and their immutable versions."""

from __future__ import annotations

import builtins
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock, as_utc
from tether.db.engine import reading
from tether.db.tables import template_versions, templates
from tether.domain.workspace import Template, TemplateVersion
from tether.errors import NotFound
from tether.ids import new_id


def _template(row: Any) -> Template:
    return Template(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        description=row.description,
        backend=row.backend,
        deprecated=row.deprecated,
        active_version_id=row.active_version_id,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


def _version(row: Any) -> TemplateVersion:
    return TemplateVersion(
        id=row.id,
        template_id=row.template_id,
        version=row.version,
        spec=row.spec,
        source=row.source,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
    )


class TemplateStore:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def push(
        self, *, spec: dict[str, Any], source: str, user_id: uuid.UUID
    ) -> tuple[Template, TemplateVersion]:
        """Create the template if new, add a version and make it active."""
        now = self._clock.now()
        name = spec["name"]
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(templates).where(templates.c.name == name))).first()
            if row is None:
                template_id = new_id()
                await conn.execute(
                    templates.insert().values(
                        id=template_id,
                        name=name,
                        display_name=spec.get("display_name") or name,
                        description=spec.get("description") or "",
                        backend=spec.get("backend") or "local",
                        deprecated=bool(spec.get("deprecated", False)),
                        active_version_id=None,
                        created_by=user_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
                number = 1
            else:
                template_id = row.id
                number = (
                    await conn.scalar(
                        sa.select(
                            sa.func.coalesce(sa.func.max(template_versions.c.version), 0)
                        ).where(template_versions.c.template_id == template_id)
                    )
                    or 0
                ) + 1
            version_id = new_id()
            await conn.execute(
                template_versions.insert().values(
                    id=version_id,
                    template_id=template_id,
                    version=number,
                    spec=spec,
                    source=source,
                    created_by=user_id,
                    created_at=now,
                )
            )
            await conn.execute(
                templates.update()
                .where(templates.c.id == template_id)
                .values(
                    active_version_id=version_id,
                    display_name=spec.get("display_name") or name,
                    description=spec.get("description") or "",
                    backend=spec.get("backend") or "local",
                    deprecated=bool(spec.get("deprecated", False)),
                    updated_at=now,
                )
            )
            trow = (
                await conn.execute(sa.select(templates).where(templates.c.id == template_id))
            ).one()
            vrow = (
                await conn.execute(
                    sa.select(template_versions).where(template_versions.c.id == version_id)
                )
            ).one()
        return _template(trow), _version(vrow)

    async def get(self, template_id: uuid.UUID) -> Template:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(sa.select(templates).where(templates.c.id == template_id))
            ).first()
        if row is None:
            raise NotFound(f"template {template_id} not found")
        return _template(row)

    async def get_by_name(self, name: str) -> Template:
        async with reading(self._engine) as conn:
            row = (await conn.execute(sa.select(templates).where(templates.c.name == name))).first()
        if row is None:
            raise NotFound(f"template {name!r} not found")
        return _template(row)

    async def list(self, *, include_deprecated: bool = True) -> builtins.list[Template]:
        query = sa.select(templates).order_by(templates.c.name)
        if not include_deprecated:
            query = query.where(templates.c.deprecated.is_(False))
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return [_template(r) for r in rows]

    async def get_version(self, version_id: uuid.UUID) -> TemplateVersion:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(
                    sa.select(template_versions).where(template_versions.c.id == version_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"template version {version_id} not found")
        return _version(row)

    async def list_versions(self, template_id: uuid.UUID) -> builtins.list[TemplateVersion]:
        async with reading(self._engine) as conn:
            rows = (
                await conn.execute(
                    sa.select(template_versions)
                    .where(template_versions.c.template_id == template_id)
                    .order_by(template_versions.c.version)
                )
            ).all()
        return [_version(r) for r in rows]
