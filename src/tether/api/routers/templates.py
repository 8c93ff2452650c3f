"""Templates: pushed as YAML (admins), listed and shown by everyone."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tether.api.auth import AdminUser, CurrentUser, graph_of
from tether.api.limits import TEMPLATE_SOURCE_MAX_CHARS
from tether.api.schemas import TemplateOut
from tether.domain.workspace import Template
from tether.workspaces.template_parse import parse_template, spec_to_json

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])


class PushTemplate(BaseModel):
    source: str = Field(max_length=TEMPLATE_SOURCE_MAX_CHARS)  # the template file (YAML)


async def resolve_template(request: Request, ref: str) -> Template:
    store = graph_of(request).template_store
    try:
        return await store.get(uuid.UUID(ref))
    except ValueError:
        return await store.get_by_name(ref)


@router.post("", status_code=201)
async def push(request: Request, body: PushTemplate, user: AdminUser) -> TemplateOut:
    spec = parse_template(body.source)
    template, version = await graph_of(request).template_store.push(
        spec=spec_to_json(spec), source=body.source, user_id=user.id
    )
    return TemplateOut.of(template, version)


@router.get("")
async def list_templates(request: Request, _: CurrentUser) -> list[TemplateOut]:
    return [TemplateOut.of(t) for t in await graph_of(request).template_store.list()]


@router.get("/{ref}")
async def show(request: Request, ref: str, _: CurrentUser) -> TemplateOut:
    template = await resolve_template(request, ref)
    version = None
    if template.active_version_id is not None:
        version = await graph_of(request).template_store.get_version(template.active_version_id)
    return TemplateOut.of(template, version)
