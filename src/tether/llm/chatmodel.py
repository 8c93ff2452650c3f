"""How the turn runner gets a chat's model: ``model_for(chat)``, sync (tests' scripted
models) or async (the registry, which may read an admin model from the database)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from pydantic_ai.models import Model

ModelFor: TypeAlias = Callable[[Any], Model | Awaitable[Model]]


async def resolve_chat_model(model_for: ModelFor, chat: Any) -> Model:
    model = model_for(chat)
    if inspect.isawaitable(model):
        return await model
    return model
