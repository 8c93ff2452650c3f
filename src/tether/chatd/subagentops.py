"""What a parent chat's turn does to its subagent chats (chatd/tools/subagents.py):
spawn one, message it, close it, interrupt its turn. No user acts here, so there is no
access check; every change is announced on the event bus like the user's own.

:class:`SubagentOps` is a part of :class:`tether.chatd.service.ChatService` (a mixin over
its store and bus), so all chat state changes still go through one service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether.channels import CHATS, chat_channel
from tether.db.chats import ChatStore
from tether.db.pubsub import EventBus
from tether.domain.chat import Chat, ChatStatus, StoredMessage
from tether.errors import Conflict


class SubagentOps:
    store: ChatStore
    _bus: EventBus
    _max_queued: int

    async def spawn_subagent(
        self,
        parent: Chat,
        *,
        title: str,
        first_message: list[dict[str, Any]],
        copy_messages: Sequence[StoredMessage] = (),
    ) -> Chat:
        """A subagent chat of ``parent``: same owner, binding, model and plan mode (SA-2),
        pending with its task as the first message; ``copy_messages`` (the parent's
        context-file messages) come first in its history."""
        created = await self.store.create(
            owner_id=parent.owner_id,
            title=title,
            first_message=first_message,
            workspace_id=parent.workspace_id,
            build_id=parent.build_id,
            agent_id=parent.agent_id,
            parent_chat_id=parent.id,
            root_chat_id=parent.root_chat_id or parent.id,
            model=parent.model,
            copy_messages=list(copy_messages),
            plan_mode=parent.plan_mode,
        )
        await self._bus.publish(CHATS, {"chat_id": str(created.id)})
        return created

    async def message_subagent(
        self, chat: Chat, parts: list[dict[str, Any]], *, interrupt: bool = False
    ) -> bool:
        """Give a subagent a message: into its history when idle, else queued (promoted
        when its turn ends; ``interrupt`` also stops that turn). Returns whether it was
        queued."""
        try:
            await self.store.send_user_message(chat.id, parts)
            queued = False
        except Conflict:  # busy: queue it
            await self.store.enqueue(chat.id, parts, max_queued=self._max_queued)
            queued = True
            if interrupt:
                await self.interrupt_running(chat)
        await self._bus.publish(CHATS, {"chat_id": str(chat.id)})
        return queued

    async def close_subagent(self, chat: Chat) -> Chat:
        """Stop a subagent (a pending one goes back to waiting, a running one is
        interrupted) and archive it."""
        if chat.status is ChatStatus.PENDING:
            try:
                await self.store.transition(chat.id, ChatStatus.WAITING)
            except Conflict:
                chat = await self.store.get(chat.id)
        await self.interrupt_running(chat)
        return await self.store.set_fields(chat.id, archived=True)

    async def interrupt_running(self, chat: Chat) -> None:
        """Ask a running chat to stop its turn (the worker running it watches row and bus);
        a chat in any other state is left as it is."""
        if chat.status is ChatStatus.RUNNING:
            try:
                await self.store.transition(
                    chat.id, ChatStatus.INTERRUPTING, interrupt_requested=True
                )
            except Conflict:
                pass  # it finished meanwhile
            await self._bus.publish(chat_channel(chat.id), {"type": "interrupt"})
