"""Chats in the Python client.

    async with TetherClient(url, token) as client:
        chats = ChatsAPI(client)
        chat = await chats.create("fix the failing test", workspace_id=ws.id)
        async for ev in chats.stream(chat.id):
            if ev.event == "message_part": ...
            if ev.event == "status" and ev.data["status"] in ("waiting", "error"): break

``stream`` yields :class:`ChatEvent` s; to resume after a dropped connection pass the last
``ChatEvent.last_event_id`` you received as ``last_event_id`` — the server sends what came
after it, nothing twice. Errors are :class:`~tether.sdk.errors.ApiError` (``queue_full``
when 20 messages already wait, ``not_found`` for a chat that is not yours, …).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import Field

from tether.sdk.client import API, TetherClient, _api_error
from tether.sdk.models import _Model
from tether.sdk.sse import SseDecoder

# The server sends a keep-alive comment every ~15 s; a read stalled far longer is a dead link.
STREAM_READ_TIMEOUT_S = 60.0

Content = str | Sequence[dict[str, Any]]


class Chat(_Model):
    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    status: str
    last_error: str | None = None
    last_error_code: str | None = None
    workspace_id: uuid.UUID | None = None
    build_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    parent_chat_id: uuid.UUID | None = None
    root_chat_id: uuid.UUID | None = None
    model: str | None = None
    archived: bool = False
    queued: int = 0
    created_at: datetime
    updated_at: datetime
    plan_mode: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    last_injected_context: list[dict[str, Any]] | None = None
    title_source: str = "auto"  # first_message | auto | user
    usage: TokenTotals = Field(default_factory=lambda: TokenTotals())


class TokenTotals(_Model):
    input_tokens: int = 0
    output_tokens: int = 0


class TurnUsage(_Model):
    message_id: uuid.UUID | None = None  # the user message that started the turn
    input_tokens: int
    output_tokens: int
    requests: int


class ChatUsage(_Model):
    """Provider-reported tokens of a chat: totals and the last turns (oldest first)."""

    input_tokens: int
    output_tokens: int
    requests: int
    turns: list[TurnUsage] = Field(default_factory=list)


class EditResult(_Model):
    message: ChatMessage  # the new user message
    superseded_from_seq: int  # messages from this seq on were replaced
    invalidated_compactions: int = 0
    chat: Chat


class ChatMessage(_Model):
    id: uuid.UUID
    chat_id: uuid.UUID
    seq: int
    role: str
    parts: list[dict[str, Any]]
    visibility: str = "both"
    model: str | None = None
    created_at: datetime
    compacted: bool = False  # before the last compaction: no longer sent to the model
    superseded: bool = False  # replaced by an edit (only with include_superseded)

    @property
    def text(self) -> str:
        """The text parts joined (what a terminal shows)."""
        return "".join(p.get("text", "") for p in self.parts if p.get("type") == "text")


class QueuedMessage(_Model):
    id: uuid.UUID
    parts: list[dict[str, Any]]
    created_at: datetime


class MessagePage(_Model):
    messages: list[ChatMessage]
    next_after_seq: int | None = None
    prev_before_seq: int | None = None  # paging backwards: the older page's ``before_seq``


class Compaction(_Model):
    """A compaction record: the model gets ``summary`` instead of messages up to
    ``through_seq`` (``kind="clear"``: nothing of them)."""

    number: int
    kind: str
    through_seq: int
    summary: str
    tokens_before: int | None = None
    created_at: datetime
    invalidated: bool = False  # an edit before its cut: no longer applied


class SendResult(_Model):
    message: ChatMessage | None = None
    queued_message: QueuedMessage | None = None
    queued: bool
    chat: Chat


@dataclass(frozen=True)
class ChatEvent:
    """One stream event. ``id`` is the event's own id (``"seq.n"``; None for state
    snapshots); ``last_event_id`` is where a reconnect should resume."""

    event: str
    data: Any
    id: str | None
    last_event_id: str | None


def image_part(data: bytes, media_type: str) -> dict[str, Any]:
    """A message part carrying an image (png, jpeg, gif or webp) for ``content`` lists."""
    return {"type": "image", "media_type": media_type, "data": base64.b64encode(data).decode()}


def _parts(content: Content) -> Any:
    return content if isinstance(content, str) else list(content)


class ChatsAPI:
    """The ``/api/v1/chats`` endpoints, through an open :class:`TetherClient`."""

    def __init__(self, client: TetherClient) -> None:
        self._client = client

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self._client._request(method, f"/chats{path}", **kwargs)

    async def create(
        self,
        content: Content,
        *,
        workspace_id: uuid.UUID | str | None = None,
        model: str | None = None,
        title: str | None = None,
        plan_mode: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> Chat:
        """``plan_mode``: the chat plans without changing the workspace (PL-9)."""
        body: dict[str, Any] = {
            "content": _parts(content),
            "workspace_id": str(workspace_id) if workspace_id else None,
            "model": model,
            "title": title,
        }
        if plan_mode:
            body["plan_mode"] = True
        if labels:
            body["labels"] = dict(labels)
        return Chat.model_validate(await self._call("POST", "", json=body))

    async def get(self, chat_id: uuid.UUID | str) -> Chat:
        return Chat.model_validate(await self._call("GET", f"/{chat_id}"))

    async def messages(
        self,
        chat_id: uuid.UUID | str,
        *,
        after_seq: int = 0,
        limit: int = 100,
        before_seq: int | None = None,
        latest: bool = False,
        include_superseded: bool = False,
    ) -> MessagePage:
        """A page forwards from ``after_seq``, or backwards: ``latest=True`` is the newest
        page, ``before_seq`` the page before that message (then follow
        ``prev_before_seq``). ``include_superseded``: also messages an edit replaced
        (``superseded=True``)."""
        params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        if latest:
            params["latest"] = "true"
        if include_superseded:
            params["include_superseded"] = "true"
        return MessagePage.model_validate(
            await self._call("GET", f"/{chat_id}/messages", params=params)
        )

    async def all_messages(self, chat_id: uuid.UUID | str) -> list[ChatMessage]:
        """The whole history, page by page."""
        out: list[ChatMessage] = []
        after: int | None = 0
        while after is not None:
            page = await self.messages(chat_id, after_seq=after, limit=500)
            out.extend(page.messages)
            after = page.next_after_seq
        return out

    async def send(
        self,
        chat_id: uuid.UUID | str,
        content: Content,
        *,
        busy: Literal["queue", "interrupt"] = "queue",
        model: str | None = None,
        plan_mode: bool | None = None,
    ) -> SendResult:
        """``plan_mode`` turns plan mode on or off from the next turn on (None: unchanged)."""
        body: dict[str, Any] = {"content": _parts(content), "busy": busy}
        if model is not None:
            body["model"] = model  # a configured model name (see TetherClient.list_models)
        if plan_mode is not None:
            body["plan_mode"] = plan_mode
        return SendResult.model_validate(
            await self._call("POST", f"/{chat_id}/messages", json=body)
        )

    async def edit(
        self, chat_id: uuid.UUID | str, message_id: uuid.UUID | str, content: Content
    ) -> EditResult:
        """Replace a user message of an idle chat and run again from it: later messages
        are superseded (409 ``chat_busy`` while a turn runs — interrupt first;
        ``message_not_editable`` for anything but a user message in the history)."""
        body = {"content": _parts(content)}
        return EditResult.model_validate(
            await self._call("PATCH", f"/{chat_id}/messages/{message_id}", json=body)
        )

    async def usage(self, chat_id: uuid.UUID | str, *, limit: int = 100) -> ChatUsage:
        """Tokens the provider reported: totals and the last ``limit`` turns."""
        return ChatUsage.model_validate(
            await self._call("GET", f"/{chat_id}/usage", params={"limit": limit})
        )

    async def queue(self, chat_id: uuid.UUID | str) -> list[QueuedMessage]:
        return [
            QueuedMessage.model_validate(q) for q in await self._call("GET", f"/{chat_id}/queue")
        ]

    async def interrupt(self, chat_id: uuid.UUID | str) -> Chat:
        return Chat.model_validate(await self._call("POST", f"/{chat_id}/interrupt"))

    async def compact(self, chat_id: uuid.UUID | str) -> Compaction:
        """Summarise the idle chat's older history for the model (409 while it runs)."""
        return Compaction.model_validate(await self._call("POST", f"/{chat_id}/compact"))

    async def clear(self, chat_id: uuid.UUID | str) -> Compaction:
        """Give the idle chat a fresh context; its history stays readable."""
        return Compaction.model_validate(await self._call("POST", f"/{chat_id}/clear"))

    async def compaction_threshold(self) -> float | None:
        """The caller's own compaction threshold (a share of each model's context window;
        it applies where it is lower than the model's); None when not set."""
        body = await self._client._request("GET", "/me/context")
        value = body.get("compaction_threshold")
        return None if value is None else float(value)

    async def set_compaction_threshold(self, value: float | None) -> float | None:
        """Set the caller's threshold (0.1–0.95; 400 outside), or drop it with None."""
        body = {"compaction_threshold": value}
        answer = await self._client._request("PUT", "/me/context", json=body)
        result = answer.get("compaction_threshold")
        return None if result is None else float(result)

    async def compactions(self, chat_id: uuid.UUID | str) -> list[Compaction]:
        return [
            Compaction.model_validate(c) for c in await self._call("GET", f"/{chat_id}/compactions")
        ]

    async def archive(self, chat_id: uuid.UUID | str, archived: bool = True) -> Chat:
        body = {"archived": archived}
        return Chat.model_validate(await self._call("POST", f"/{chat_id}/archive", json=body))

    async def regenerate_title(self, chat_id: uuid.UUID | str) -> Chat:
        """Ask the chat's model for a new title (502/504 when the provider fails)."""
        return Chat.model_validate(await self._call("POST", f"/{chat_id}/title/regenerate"))

    async def children(self, chat_id: uuid.UUID | str) -> list[Chat]:
        return [Chat.model_validate(c) for c in await self._call("GET", f"/{chat_id}/children")]

    async def stream(
        self, chat_id: uuid.UUID | str, last_event_id: str | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Live events of the chat from ``last_event_id`` (None: from the first message)
        until the caller stops iterating or the connection drops (raises ApiError)."""
        client = self._client
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(client.timeout, read=STREAM_READ_TIMEOUT_S)
        try:
            async with client._http.stream(
                "GET", f"{API}/chats/{chat_id}/stream", headers=headers, timeout=timeout
            ) as response:
                if response.is_error:
                    raise _api_error(response.status_code, await response.aread())
                decoder = SseDecoder()
                own_id = False  # the block being read carries its own ``id:`` line
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        own_id = True
                    event = decoder.feed(line)
                    if not line.rstrip("\r\n"):
                        has_id, own_id = own_id, False
                        if event is not None:
                            try:
                                data = event.json()
                            except ValueError:
                                data = event.data
                            yield ChatEvent(
                                event.event,
                                data,
                                event.id if has_id else None,
                                decoder.last_event_id,
                            )
        except httpx.TransportError as exc:
            raise client._transport_error(exc) from exc

    async def watch(self) -> AsyncIterator[ChatEvent]:
        """The caller's own chats as they change (``GET /api/v1/me/chats/stream``):
        ``ready`` once the watch is in place (list the chats after it, and again after a
        reconnect), then ``created``, ``status``, ``title``, ``archived`` or ``updated``
        events whose data is ``{"changes": [...], "chat": {...}}`` (``Chat.model_validate``
        reads the chat), until the caller stops iterating or the connection drops (raises
        ApiError)."""
        client = self._client
        timeout = httpx.Timeout(client.timeout, read=STREAM_READ_TIMEOUT_S)
        try:
            async with client._http.stream(
                "GET",
                f"{API}/me/chats/stream",
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
            ) as response:
                if response.is_error:
                    raise _api_error(response.status_code, await response.aread())
                decoder = SseDecoder()
                async for line in response.aiter_lines():
                    event = decoder.feed(line)
                    if event is not None and event.event:
                        yield ChatEvent(event.event, event.json(), None, None)
        except httpx.TransportError as exc:
            raise client._transport_error(exc) from exc

    # Last on purpose: a method named ``list`` shadows the builtin in later annotations.
    async def list(
        self,
        *,
        archived: bool = False,
        status: str | None = None,
        search: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Chat]:
        """``search``: a substring of the title (any case); ``labels``: all must be set."""
        params: dict[str, Any] = {"archived": "true" if archived else "false"}
        if status is not None:
            params["status"] = status
        if search:
            params["q"] = search
        if labels:
            params["label"] = [f"{k}:{v}" for k, v in labels.items()]
        return [Chat.model_validate(c) for c in await self._call("GET", "", params=params)]

    async def update(
        self,
        chat_id: uuid.UUID | str,
        *,
        title: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Chat:
        """Rename the chat and/or replace its labels (``None``: unchanged)."""
        body: dict[str, Any] = {}
        if title is not None:
            body["title"] = title
        if labels is not None:
            body["labels"] = dict(labels)
        return Chat.model_validate(await self._call("PATCH", f"/{chat_id}", json=body))
