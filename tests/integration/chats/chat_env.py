"""Helpers of the chat API tests: the environment, a fake worker, a stream collector."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tether.chatd.stream import message_json
from tether.domain.chat import Chat, ChatStatus, StoredMessage
from tether.domain.user import User
from tether.ids import new_id
from tether.sdk.chats import ChatEvent, ChatsAPI
from tether.sdk.client import TetherClient
from tether.wiring import Graph


@dataclass
class Member:
    user: User
    token: str
    http: httpx.AsyncClient
    sdk: TetherClient

    @property
    def chats(self) -> ChatsAPI:
        return ChatsAPI(self.sdk)


@dataclass
class ChatEnv:
    graph: Graph
    url: str
    alice: Member
    bob: Member

    async def workspace_of(self, user: User, name: str = "ws") -> Any:
        admin = await self.graph.users.get_user_by_name("root")
        try:
            template = await self.graph.template_store.get_by_name("t")
        except Exception:
            template, _ = await self.graph.template_store.push(
                spec={"name": "t"}, source="name: t\n", user_id=admin.id
            )
        ws, _ = await self.graph.workspace_store.create(
            owner_id=user.id, template_id=template.id, name=name, ttl_ms=None
        )
        return ws


class FakeWorker:
    """Plays the chat worker: claims, publishes parts, persists replies, finishes turns."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.worker_id = new_id()

    async def claim(self) -> list[Chat]:
        claimed = await self.graph.chats.claim(self.worker_id, limit=10)
        for chat in claimed:
            self.graph.hub.publish(chat.id, "status", {"status": chat.status.value})
        return claimed

    def part(self, chat_id: Any, text: str) -> None:
        self.graph.hub.publish(chat_id, "message_part", {"type": "text", "text": text})

    async def reply(self, chat_id: Any, text: str) -> StoredMessage:
        stored = await self.graph.chats.append_message(
            chat_id, role="assistant", parts=[{"type": "text", "text": text}]
        )
        self.graph.hub.publish_message(stored)
        return stored

    async def finish(self, chat_id: Any, error: str | None = None) -> Chat:
        chat, promoted = await self.graph.chats.finish_turn(chat_id, self.worker_id, error=error)
        if promoted is not None:
            self.graph.hub.publish_message(promoted)
        self.graph.hub.publish(chat_id, "status", {"status": chat.status.value})
        return chat


@dataclass
class Collector:
    """Reads a chat stream in a task; tests wait on what it has seen."""

    events: list[ChatEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    error: BaseException | None = None

    @classmethod
    def start(cls, api: ChatsAPI, chat_id: Any, last_event_id: str | None = None) -> Collector:
        c = cls()

        async def run() -> None:
            try:
                async for ev in api.stream(chat_id, last_event_id=last_event_id):
                    c.events.append(ev)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # surfaced by wait_for
                c.error = exc

        c.task = asyncio.create_task(run())
        return c

    async def wait_for(
        self, pred: Callable[[list[ChatEvent]], bool], timeout: float = 5.0
    ) -> list[ChatEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(self.events):
            if self.error is not None:
                raise AssertionError(f"stream failed: {self.error!r}")
            if loop.time() > deadline:
                raise AssertionError(f"timed out; got {[(e.id, e.event) for e in self.events]}")
            await asyncio.sleep(0.01)
        return self.events

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def with_ids(self) -> list[tuple[str, str, Any]]:
        return [(e.id, e.event, e.data) for e in self.events if e.id is not None]


def msg_event_data(stored: StoredMessage) -> dict[str, Any]:
    return message_json(stored)


def has_status(status: ChatStatus | str, *, with_id: bool = True) -> Callable[..., bool]:
    value = status.value if isinstance(status, ChatStatus) else status
    return lambda evs: any(
        e.event == "status" and e.data["status"] == value and (e.id is not None or not with_id)
        for e in evs
    )


async def member(graph: Graph, url: str, name: str) -> Member:
    user = await graph.users.create_user(name, "member")
    token, _ = await graph.users.create_token(user.id, "test")
    http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return Member(user, token, http, TetherClient(url, token, timeout=10))
