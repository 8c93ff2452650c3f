"""Admin chat settings (docs/behaviour.md §5.8): the template allowlist that limits what
``list_templates``, ``read_template`` and ``create_workspace`` see (CW-24), and the system
and user prompts added to every chat's system prompt. Admins only; stored in the database
(``chat_config``) and announced on the bus, so every replica's chat workers drop their cached
copy (``chatd/configcache.py``) and apply a change from the next turn/tool call on."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tether.api.auth import AdminUser
from tether.api.deps import ChatConfigStoreDep, TemplateStoreDep, UsageGuardDep, UserStoreDep
from tether.chatd.usagelimits import PERIOD, UsageLimits
from tether.db.chatconfig import ChatConfig
from tether.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api/v1/chat-config", tags=["chat-config"])

PROMPT_MAX_CHARS = 64 * 1024
ALLOWLIST_MAX = 1000
LIMIT_USERS_MAX = 10_000
TOKENS_MAX = 10**15
Tokens = Annotated[int, Field(ge=0, le=TOKENS_MAX)]


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


@router.get("")
async def show(store: ChatConfigStoreDep, _: AdminUser) -> ChatConfigOut:
    return ChatConfigOut.of(await store.get())


@router.put("/template-allowlist")
async def set_template_allowlist(
    store: ChatConfigStoreDep, templates: TemplateStoreDep, body: SetAllowlist, _: AdminUser
) -> ChatConfigOut:
    for i, template_id in enumerate(body.template_ids):
        try:
            await templates.get(template_id)
        except NotFound:
            raise InvalidInput(
                f"template {template_id} does not exist", field=f"template_ids[{i}]"
            ) from None
    return ChatConfigOut.of(await store.set_template_allowlist(body.template_ids))


@router.put("/system-prompt")
async def set_system_prompt(
    store: ChatConfigStoreDep, body: SetPrompt, _: AdminUser
) -> ChatConfigOut:
    return ChatConfigOut.of(await store.set_system_prompt(body.prompt))


@router.put("/user-prompt")
async def set_user_prompt(
    store: ChatConfigStoreDep, body: SetPrompt, _: AdminUser
) -> ChatConfigOut:
    return ChatConfigOut.of(await store.set_user_prompt(body.prompt))


class UsageLimitsIn(BaseModel):
    """Tokens (input + output) per user per calendar month, UTC (chatd/usagelimits.py).
    ``default_tokens``: every user (null: no limit); ``users``: per-user overrides (null:
    no limit for that user). Replaces the whole setting."""

    default_tokens: Tokens | None = None
    users: dict[uuid.UUID, Tokens | None] = Field(default_factory=dict, max_length=LIMIT_USERS_MAX)


class UsageLimitsOut(UsageLimitsIn):
    period: str = PERIOD


@router.get("/usage-limits")
async def show_usage_limits(guard: UsageGuardDep, _: AdminUser) -> UsageLimitsOut:
    limits = await guard.limits()
    return UsageLimitsOut(default_tokens=limits.default_tokens, users=limits.users)


@router.put("/usage-limits")
async def set_usage_limits(
    guard: UsageGuardDep, users: UserStoreDep, body: UsageLimitsIn, _: AdminUser
) -> UsageLimitsOut:
    for user_id in body.users:
        try:
            await users.get_user(user_id)
        except NotFound:
            raise InvalidInput(f"user {user_id} does not exist", field="users") from None
    limits = await guard.set_limits(
        UsageLimits(default_tokens=body.default_tokens, users=dict(body.users))
    )
    return UsageLimitsOut(default_tokens=limits.default_tokens, users=limits.users)
