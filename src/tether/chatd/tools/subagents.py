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

from tether.channels import CHATS, chat_channel
from tether.chatd.models import Chat, ChatStatus
from tether.chatd.tools.base import Args, ToolContext, invalid_arguments, make_tool
from tether.errors import Conflict, NotFound

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


async def request_interrupt(ctx: ToolContext, chat: Chat) -> None:
    """Ask a running chat to stop its turn (the worker running it watches row and bus)."""
    deps = ctx.deps
    if chat.status is ChatStatus.RUNNING:
        try:
            await deps.chats.transition(chat.id, ChatStatus.INTERRUPTING, interrupt_requested=True)
        except Conflict:
            pass  # it finished meanwhile
        await deps.bus.publish(chat_channel(chat.id), {"type": "interrupt"})


def subagent_tools(ctx: ToolContext) -> list[Tool[Any]]:
    deps = ctx.deps

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
        created = await deps.chats.create(
            owner_id=parent.owner_id,
            title=args.title or args.prompt.strip().splitlines()[0][:80],
            first_message=_text_parts(args.prompt),
            workspace_id=parent.workspace_id,
            build_id=parent.build_id,
            agent_id=parent.agent_id,
            parent_chat_id=parent.id,
            root_chat_id=parent.root_chat_id or parent.id,
            model=parent.model,
            copy_messages=context,
            plan_mode=parent.plan_mode,  # SA-2
        )
        await deps.bus.publish(CHATS, {"chat_id": str(created.id)})
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
        parts = _text_parts(args.message)
        try:
            await deps.chats.send_user_message(chat.id, parts)
            queued = False
        except Conflict:  # busy: queue it, promoted when the running turn ends
            await deps.chats.enqueue(chat.id, parts, max_queued=deps.settings.max_queued_messages)
            queued = True
            if args.interrupt:
                await request_interrupt(ctx, chat)
        await deps.bus.publish(CHATS, {"chat_id": str(chat.id)})
        return {"chat_id": str(chat.id), "queued": queued}

    async def close_agent(args: CloseArgs) -> dict[str, Any]:
        chat = await child(args.chat_id)
        if chat.status is ChatStatus.PENDING:
            try:
                await deps.chats.transition(chat.id, ChatStatus.WAITING)
            except Conflict:
                chat = await deps.chats.get(chat.id)
        await request_interrupt(ctx, chat)
        await deps.chats.set_fields(chat.id, archived=True)
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
