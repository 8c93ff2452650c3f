"""Admin chat settings (docs/behaviour.md §5.8): the template allowlist that limits what
``list_templates``, ``read_template`` and ``create_workspace`` see (CW-24), and the system
and user prompts added to every chat's system prompt. Admins only; stored in the database
(``chat_config``) and announced on the bus, so every replica's chat workers drop their cached
copy (``chatd/configcache.py``) and apply a change from the next turn/tool call on."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tether.api.auth import AdminUser, graph_of
from tether.db.chatconfig import ChatConfig, ChatConfigStore
from tether.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api/v1/chat-config", tags=["chat-config"])

PROMPT_MAX_CHARS = 64 * 1024
ALLOWLIST_MAX = 1000


class ChatConfigOut(BaseModel):
    template_allowlist: list[uuid.UUID]
    system_prompt: str
    user_prompt: str

    @classmethod
    def of(cls, c: ChatConfig) -> ChatConfigOut:
        return cls(
            template_allowlist=sorted(c.template_allowlist, key=str),
            system_prompt=c.system_prompt,
            user_prompt=c.user_prompt,
        )


class SetAllowlist(BaseModel):
    template_ids: list[uuid.UUID] = Field(max_length=ALLOWLIST_MAX)  # empty: every template


class SetPrompt(BaseModel):
    prompt: str = Field(max_length=PROMPT_MAX_CHARS)  # empty: none


def _store(request: Request) -> ChatConfigStore:
    graph = graph_of(request)
    return ChatConfigStore(graph.engine, graph.clock, graph.bus)  # writes are announced


@router.get("")
async def show(request: Request, _: AdminUser) -> ChatConfigOut:
    return ChatConfigOut.of(await _store(request).get())


@router.put("/template-allowlist")
async def set_template_allowlist(
    request: Request, body: SetAllowlist, _: AdminUser
) -> ChatConfigOut:
    templates = graph_of(request).template_store
    for i, template_id in enumerate(body.template_ids):
        try:
            await templates.get(template_id)
        except NotFound:
            raise InvalidInput(
                f"template {template_id} does not exist", field=f"template_ids[{i}]"
            ) from None
    return ChatConfigOut.of(await _store(request).set_template_allowlist(body.template_ids))


@router.put("/system-prompt")
async def set_system_prompt(request: Request, body: SetPrompt, _: AdminUser) -> ChatConfigOut:
    return ChatConfigOut.of(await _store(request).set_system_prompt(body.prompt))


@router.put("/user-prompt")
async def set_user_prompt(request: Request, body: SetPrompt, _: AdminUser) -> ChatConfigOut:
    return ChatConfigOut.of(await _store(request).set_user_prompt(body.prompt))
