"""Subagent tools for root chats (docs/behaviour.md §5.4): spawn_agent, wait_agent, message_agent,
close_agent.

A child chat inherits the parent's binding triple (SA-1) and its persisted context-file
messages (SA-5), starts ``pending`` with the prompt as first message and is run by any
worker like every other chat. Children get no lifecycle or subagent tools (SA-4).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field
from pydantic_ai import Tool

from tether.channels import chat_channel
from tether.chatd.tools.base import Args, ToolContext, invalid_arguments, make_tool
from tether.domain.chat import Chat, ChatStatus
from tether.errors import NotFound

POLL_S = 0.2
_IDLE = (ChatStatus.WAITING, ChatStatus.ERROR)


REPORT_MAX_CHARS = 16_000  # what a subagent hands back to its parent (issue #16 §6)


def bounded_report(text: str) -> str:
    """A subagent's answer as its parent's tool result: at most ``REPORT_MAX_CHARS``."""
    if len(text) <= REPORT_MAX_CHARS:
        return text
    note = "\n[the report was truncated; read the subagent chat for the rest]"
    return text[: REPORT_MAX_CHARS - len(note)] + note


class SpawnArgs(Args):
    prompt: str = Field(min_length=1, description="The task for the subagent.")
    title: str | None = None


class WaitArgs(Args):
    chat_id: str
    timeout_seconds: float | None = Field(default=None, gt=0)


class MessageArgs(Args):
    chat_id: str
    message: str = Field(min_length=1)
    interrupt: bool = False


class CloseArgs(Args):
    chat_id: str


def _text_parts(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


def subagent_tools(ctx: ToolContext) -> list[Tool[Any]]:
    """The subagent tools. They read chats from the store; every change of chat state goes
    through :class:`~tether.chatd.service.ChatService` (``deps.chat_service``)."""
    deps = ctx.deps
    service = deps.chat_service

    async def child(raw: str) -> Chat:
        try:
            chat_id = uuid.UUID(raw)
        except ValueError:
            raise invalid_arguments(f"invalid chat_id: {raw!r} is not a uuid") from None
        chat = await deps.chats.get(chat_id)
        if chat.parent_chat_id != ctx.chat_id:
            raise NotFound(f"chat {chat_id} is not a subagent of this chat")
        return chat

    async def last_assistant_text(chat_id: uuid.UUID) -> str:
        for msg in reversed(await deps.chats.messages(chat_id)):
            if msg.role == "assistant":
                texts = [p.get("text", "") for p in msg.parts if p.get("type") == "text"]
                if any(texts):
                    return bounded_report("".join(texts))
        return ""

    async def spawn_agent(args: SpawnArgs) -> dict[str, Any]:
        parent = await deps.chats.get(ctx.chat_id)
        context = [
            m
            for m in await deps.chats.messages(parent.id)
            if any(p.get("type") == "context-file" for p in m.parts)
        ]
        created = await service.spawn_subagent(  # same model and plan mode (SA-2)
            parent,
            title=args.title or args.prompt.strip().splitlines()[0][:80],
            first_message=_text_parts(args.prompt),
            copy_messages=context,
        )
        return {"chat_id": str(created.id), "title": created.title, "status": created.status.value}

    async def wait_agent(args: WaitArgs) -> dict[str, Any]:
        chat = await child(args.chat_id)
        timeout = args.timeout_seconds or deps.settings.subagent_wait_default_s
        deadline = deps.clock.monotonic() + timeout
        async with deps.bus.subscribe(chat_channel(chat.id)) as sub:
            while True:
                chat = await deps.chats.get(chat.id)
                if chat.status in _IDLE:
                    result: dict[str, Any] = {
                        "chat_id": str(chat.id),
                        "status": chat.status.value,
                        "text": await last_assistant_text(chat.id),
                    }
                    if chat.last_error:
                        result["error"] = chat.last_error
                    return result
                remaining = deadline - deps.clock.monotonic()
                if remaining <= 0:
                    return {
                        "chat_id": str(chat.id),
                        "status": chat.status.value,
                        "timed_out": True,
                        "message": f"the subagent is still working after {timeout:g}s",
                    }
                await sub.get(timeout=min(POLL_S, remaining))

    async def message_agent(args: MessageArgs) -> dict[str, Any]:
        chat = await child(args.chat_id)
        queued = await service.message_subagent(
            chat, _text_parts(args.message), interrupt=args.interrupt
        )
        return {"chat_id": str(chat.id), "queued": queued}

    async def close_agent(args: CloseArgs) -> dict[str, Any]:
        chat = await service.close_subagent(await child(args.chat_id))
        return {"chat_id": str(chat.id), "closed": True}

    return [
        make_tool(
            "spawn_agent",
            "Start a subagent chat on the same workspace with a task; returns its chat_id.",
            SpawnArgs,
            spawn_agent,
        ),
        make_tool(
            "wait_agent",
            "Wait until a subagent finishes its turn; returns its last answer.",
            WaitArgs,
            wait_agent,
        ),
        make_tool(
            "message_agent",
            "Send a subagent a message (queued if it is busy; interrupt stops its turn).",
            MessageArgs,
            message_agent,
        ),
        make_tool("close_agent", "Stop and archive a subagent.", CloseArgs, close_agent),
    ]
