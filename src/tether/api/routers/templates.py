"""Templates: pushed as YAML (admins), listed and shown by everyone."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tether.api.auth import AdminUser, CurrentUser
from tether.api.deps import TemplateStoreDep
from tether.api.limits import TEMPLATE_SOURCE_MAX_CHARS
from tether.api.schemas import TemplateOut
from tether.db.templates import TemplateStore
from tether.domain.workspace import Template
from tether.workspaces.template_parse import parse_template, spec_to_json

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])


class PushTemplate(BaseModel):
    source: str = Field(max_length=TEMPLATE_SOURCE_MAX_CHARS)  # the template file (YAML)


async def resolve_template(store: TemplateStore, ref: str) -> Template:
    try:
        return await store.get(uuid.UUID(ref))
    except ValueError:
        return await store.get_by_name(ref)


@router.post("", status_code=201)
async def push(store: TemplateStoreDep, body: PushTemplate, user: AdminUser) -> TemplateOut:
    spec = parse_template(body.source)
    template, version = await store.push(
        spec=spec_to_json(spec), source=body.source, user_id=user.id
    )
    return TemplateOut.of(template, version)


@router.get("")
async def list_templates(store: TemplateStoreDep, _: CurrentUser) -> list[TemplateOut]:
    return [TemplateOut.of(t) for t in await store.list()]


@router.get("/{ref}")
async def show(store: TemplateStoreDep, ref: str, _: CurrentUser) -> TemplateOut:
    template = await resolve_template(store, ref)
    version = None
    if template.active_version_id is not None:
        version = await store.get_version(template.active_version_id)
    return TemplateOut.of(template, version)
