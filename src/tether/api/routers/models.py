"""Models: the configured models a chat can name. Anyone lists them; admins add, edit and
remove their own (the operator's come from the server config and are read-only here).

No answer ever carries a key or where a key comes from; the base URL is shown to admins.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from tether.api.auth import AdminUser, CurrentUser, graph_of
from tether.llm.config import AdminModelInput, AdminModelPatch, ModelConfig
from tether.llm.registry import ModelRegistry
from tether.workspaces.models import User

router = APIRouter(prefix="/api/v1/models", tags=["models"])


class ModelOut(BaseModel):
    name: str
    provider: str
    model: str
    default: bool
    source: str  # operator | admin
    stream: bool
    request_timeout_s: float
    connect_timeout_s: float
    max_retries: int
    context_window: int | None = None
    compaction_threshold: float = 0.7
    images: bool = False  # accepts image parts
    base_url: str | None = None  # admins only

    @classmethod
    def of(cls, cfg: ModelConfig, *, default: bool, viewer: User) -> ModelOut:
        return cls(
            name=cfg.name,
            provider=cfg.provider,
            model=cfg.model,
            default=default,
            source=cfg.source,
            stream=cfg.stream,
            request_timeout_s=cfg.request_timeout_s,
            connect_timeout_s=cfg.connect_timeout_s,
            max_retries=cfg.max_retries,
            context_window=cfg.context_window,
            compaction_threshold=cfg.compaction_threshold,
            images=cfg.images,
            base_url=cfg.base_url if viewer.is_admin else None,
        )


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = graph_of(request).models
    return registry


@router.get("")
async def list_models(request: Request, user: CurrentUser) -> list[ModelOut]:
    listed = await _registry(request).list()
    return [ModelOut.of(m.config, default=m.default, viewer=user) for m in listed]


@router.post("", status_code=201)
async def add_model(request: Request, body: AdminModelInput, user: AdminUser) -> ModelOut:
    registry = _registry(request)
    cfg = await registry.add(body, user_id=user.id)
    return ModelOut.of(cfg, default=cfg.name == registry.default, viewer=user)


@router.patch("/{name}")
async def edit_model(
    request: Request, name: str, body: AdminModelPatch, user: AdminUser
) -> ModelOut:
    registry = _registry(request)
    cfg = await registry.edit(name, body)
    return ModelOut.of(cfg, default=cfg.name == registry.default, viewer=user)


@router.delete("/{name}", status_code=204)
async def remove_model(request: Request, name: str, _: AdminUser) -> Response:
    await _registry(request).remove(name)
    return Response(status_code=204)
