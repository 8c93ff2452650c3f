"""Driving chats straight through the store in integration tests (real worker, scripted
models per chat): shared by the chat-daemon and the binding test environments."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic_ai.models import Model

from support.server import RunningServer
from tether.chatd.worker import ChatWorker
from tether.db.chats import ChatStore
from tether.domain.chat import Chat, ChatStatus
from tether.domain.user import User

TERMINAL = (ChatStatus.WAITING, ChatStatus.ERROR)


class ChatDriver:
    """Mixin; the host provides ``server``, ``owner``, the scripted ``models`` (by chat or
    root chat id), ``child_models`` (by parent id), ``default_model`` and ``worker``."""

    server: RunningServer
    owner: User
    models: dict[uuid.UUID, Model]
    child_models: dict[uuid.UUID, Model]
    default_model: Model
    worker: ChatWorker | None
    status_poll_s: float = 0.01

    @property
    def graph(self) -> Any:
        return self.server.graph

    @property
    def chats(self) -> ChatStore:
        return self.graph.chats  # type: ignore[no-any-return]

    def model_for(self, chat: Chat) -> Model:
        """The scripted model of a chat: a subagent's by its parent, else by the chat or
        its root, else the default."""
        if chat.parent_chat_id is not None and chat.parent_chat_id in self.child_models:
            return self.child_models[chat.parent_chat_id]
        for key in (chat.id, chat.root_chat_id):
            if key is not None and key in self.models:
                return self.models[key]
        return self.default_model

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
