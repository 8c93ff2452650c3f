"""The model registry: the operator's models (server config) merged with the admins' (DB).

Chats name a model; :meth:`ModelRegistry.chat_model` turns what a request says into a
configured name (or a 400 listing the available names), :meth:`ModelRegistry.model` builds
the pydantic-ai model of a name for a turn. Operator models cost no query; an admin model
costs one small read per turn (so an edit on one replica is seen by all at the next turn).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from pydantic_ai.models import Model

from tether.errors import Conflict, InvalidInput, NotFound
from tether.llm.config import AdminModelInput, AdminModelPatch, ModelConfig, OperatorModels
from tether.llm.models import build_model

log = logging.getLogger(__name__)


class StoredModelRow(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def updated_at(self) -> datetime: ...


class AdminModelStore(Protocol):
    """Where admin models live (``tether.db.llm_models.ModelStore``)."""

    async def list(self) -> list[Any]: ...
    async def get(self, name: str) -> Any | None: ...
    async def add(self, name: str, config: dict[str, Any], *, user_id: uuid.UUID) -> Any: ...
    async def replace(self, name: str, config: dict[str, Any]) -> Any: ...
    async def remove(self, name: str) -> None: ...


@dataclass(frozen=True)
class ListedModel:
    config: ModelConfig
    default: bool


class ModelRegistry:
    def __init__(
        self,
        operator: OperatorModels,
        store: AdminModelStore,
        *,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self._operator = {m.name: m for m in operator.models}
        self._defaults = defaults or {}  # bounds an admin model leaves out (from settings)
        self.default = operator.default
        self._store = store
        self._built: dict[str, tuple[object, Model]] = {}

    async def list(self) -> list[ListedModel]:
        configs = list(self._operator.values())
        for row in await self._store.list():
            try:
                configs.append(_admin_config(row))
            except InvalidInput as exc:  # one bad row must not hide every model
                log.warning("%s", exc.message)
        return [ListedModel(c, c.name == self.default) for c in configs]

    async def get(self, name: str) -> ModelConfig:
        """The config of ``name``; :class:`InvalidInput` listing the names when unknown."""
        found = self._operator.get(name)
        if found is not None:
            return found
        row = await self._store.get(name)
        if row is not None:
            return _admin_config(row)
        names = [m.config.name for m in await self.list()]
        raise InvalidInput(
            f"model {name!r} is not configured; available: {', '.join(names)}",
            field="model",
            available=names,
        )

    async def chat_model(self, requested: str | None) -> str:
        """The configured name a new chat stores (the default when none is asked for)."""
        if requested is None:
            return self.default
        return (await self.get(requested)).name

    async def model(self, name: str | None) -> Model:
        """The pydantic-ai model of ``name`` (the default for ``None``), built once per
        version of its config."""
        name = name or self.default
        found = self._operator.get(name)
        version: object
        if found is not None:
            cfg, version = found, "operator"
        else:
            row = await self._store.get(name)
            if row is None:
                await self.get(name)  # raises the 400 naming the available models
                raise AssertionError("unreachable")
            cfg, version = _admin_config(row), row.updated_at
        cached = self._built.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        model = build_model(cfg)
        self._built[name] = (version, model)
        return model

    # --- admin edits ----------------------------------------------------------------------

    async def add(self, data: AdminModelInput, *, user_id: uuid.UUID) -> ModelConfig:
        self._not_operator(data.name)
        unset = {k: v for k, v in self._defaults.items() if k not in data.model_fields_set}
        cfg = data.model_copy(update=unset).to_config()
        await self._store.add(cfg.name, _document(cfg), user_id=user_id)
        return cfg

    async def edit(self, name: str, patch: AdminModelPatch) -> ModelConfig:
        self._not_operator(name)
        row = await self._store.get(name)
        if row is None:
            raise NotFound(f"model {name!r} not found")
        cfg = patch.apply(_admin_config(row))
        await self._store.replace(name, _document(cfg))
        return cfg

    async def remove(self, name: str) -> None:
        self._not_operator(name)
        await self._store.remove(name)

    def _not_operator(self, name: str) -> None:
        if name in self._operator:
            raise Conflict(
                f"model {name!r} is defined by the server config; only the operator can change it"
            )


def _document(cfg: ModelConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude={"source", "api_key_file", "name"})


def _admin_config(row: StoredModelRow) -> ModelConfig:
    """Re-validated with the admin rules on every read: a row written by hand with a
    ``python`` provider or a key file is refused, never imported or read."""
    try:
        return AdminModelInput(name=row.name, **row.config).to_config()
    except (ValidationError, TypeError) as exc:
        raise InvalidInput(f"stored model {row.name!r} is invalid: {exc}", field="model") from exc
