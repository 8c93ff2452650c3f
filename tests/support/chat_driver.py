"""Driving chats straight through the store in integration tests (real worker, scripted
models per chat): shared by the chat-daemon and the binding test environments."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic_ai.models import Model

from tether.chatd.models import Chat, ChatStatus
from tether.chatd.worker import ChatWorker
from tether.db.chats import ChatStore
from tether.workspaces.models import User

TERMINAL = (ChatStatus.WAITING, ChatStatus.ERROR)


class ChatDriver:
    """Mixin; the host provides ``chats``, ``owner``, ``models`` and ``worker``."""

    chats: ChatStore
    owner: User
    models: dict[uuid.UUID, Model]
    worker: ChatWorker | None
    status_poll_s: float = 0.01

    async def new_chat(self, text: str, model: Model | None = None, **kwargs: Any) -> Chat:
        chat = await self.chats.create(
            owner_id=self.owner.id,
            title=text[:40],
            first_message=[{"type": "text", "text": text}],
            **kwargs,
        )
        if model is not None:
            self.models[chat.id] = model
        if self.worker is not None:
            self.worker.wake()
        return chat

    async def send(self, chat_id: uuid.UUID, text: str) -> None:
        await self.chats.send_user_message(chat_id, [{"type": "text", "text": text}])
        if self.worker is not None:
            self.worker.wake()

    async def wait_status(
        self, chat_id: uuid.UUID, statuses: tuple[ChatStatus, ...] = TERMINAL, timeout: float = 30
    ) -> Chat:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            chat = await self.chats.get(chat_id)
            if chat.status in statuses:
                return chat
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"chat stayed {chat.status} (wanted {statuses})")
            await asyncio.sleep(self.status_poll_s)
