"""The JSON shapes of the chats API (``api/routers/chats.py``) — request bodies and
responses — and :func:`chat_outs`, a chat as the API shows it (the watch stream of
``api/routers/chatwatch.py`` sends the same)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from tether.api.limits import MODEL_SPEC_MAX, TITLE_MAX, MessageParts, MessageText
from tether.chatd.service import ChatService
from tether.db.chatlabels import KEY_MAX, LABELS_MAX, VALUE_MAX
from tether.db.usage import Tokens
from tether.domain.chat import Chat, QueuedMessage, StoredMessage

Content = MessageText | MessageParts
Labels = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=KEY_MAX)],
        Annotated[str, Field(max_length=VALUE_MAX)],
    ],
    Field(max_length=LABELS_MAX),
]


class CreateChat(BaseModel):
    content: Content
    workspace_id: uuid.UUID | None = None
    model: str | None = Field(default=None, min_length=1, max_length=MODEL_SPEC_MAX)
    title: str | None = Field(default=None, max_length=TITLE_MAX)
    plan_mode: bool = False  # read-only turns and a plan file (PL-9)
    labels: Labels | None = None


class UpdateChat(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    labels: Labels | None = None  # replaces the chat's labels


class SendMessage(BaseModel):
    content: Content
    busy: Literal["queue", "interrupt"] = "queue"
    model: str | None = Field(default=None, min_length=1, max_length=256)  # a configured name
    plan_mode: bool | None = None  # switch plan mode on/off from the next turn; None: keep


class EditMessage(BaseModel):
    content: Content  # replaces the message; later messages are superseded (chatd/edits.py)


class ArchiveChat(BaseModel):
    archived: bool = True


class UsageTotals(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class ChatOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    status: str
    last_error: str | None
    last_error_code: str | None
    workspace_id: uuid.UUID | None
    build_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    parent_chat_id: uuid.UUID | None
    root_chat_id: uuid.UUID | None
    model: str | None
    archived: bool
    queued: int
    created_at: datetime
    updated_at: datetime
    plan_mode: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    # the instruction/skill parts last injected, without file contents (None: none found)
    last_injected_context: list[dict[str, Any]] | None = None
    title_source: str = "auto"  # first_message | auto | user (chatd/autotitle.py)
    usage: UsageTotals = Field(default_factory=UsageTotals)  # provider-reported, all turns

    @classmethod
    def of(
        cls,
        c: Chat,
        queued: int = 0,
        labels: dict[str, str] | None = None,
        usage: Tokens | None = None,
    ) -> ChatOut:
        return cls(
            id=c.id,
            owner_id=c.owner_id,
            title=c.title,
            status=c.status.value,
            last_error=c.last_error,
            last_error_code=c.last_error_code,
            workspace_id=c.workspace_id,
            build_id=c.build_id,
            agent_id=c.agent_id,
            parent_chat_id=c.parent_chat_id,
            root_chat_id=c.root_chat_id,
            model=c.model,
            archived=c.archived,
            queued=queued,
            created_at=c.created_at,
            updated_at=c.updated_at,
            plan_mode=c.plan_mode,
            labels=labels or {},
            last_injected_context=c.last_injected_context,
            title_source=c.title_source,
            usage=UsageTotals(
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
            ),
        )


class MessageOut(BaseModel):
    id: uuid.UUID
    chat_id: uuid.UUID
    seq: int
    role: str
    parts: list[dict[str, Any]]
    visibility: str
    model: str | None
    created_at: datetime
    compacted: bool = False  # before the chat's last compaction: no longer sent to the model
    superseded: bool = False  # replaced by an edit (listed only with include_superseded)

    @classmethod
    def of(cls, m: StoredMessage, compacted_through: int = 0) -> MessageOut:
        return cls(
            id=m.id,
            chat_id=m.chat_id,
            seq=m.seq,
            role=m.role,
            parts=m.parts,
            visibility=m.visibility,
            model=m.model,
            created_at=m.created_at,
            compacted=m.seq <= compacted_through,
            superseded=m.superseded,
        )


class QueuedOut(BaseModel):
    id: uuid.UUID
    parts: list[dict[str, Any]]
    created_at: datetime

    @classmethod
    def of(cls, q: QueuedMessage) -> QueuedOut:
        return cls(id=q.id, parts=q.parts, created_at=q.created_at)


class MessagePageOut(BaseModel):
    messages: list[MessageOut]
    next_after_seq: int | None
    # paging backwards (``before_seq`` / ``latest``): pass as ``before_seq`` for the older
    # page; None when there is none
    prev_before_seq: int | None = None


class SendOut(BaseModel):
    message: MessageOut | None
    queued_message: QueuedOut | None
    queued: bool
    chat: ChatOut


class EditOut(BaseModel):
    message: MessageOut  # the new user message
    superseded_from_seq: int  # messages from this seq on were replaced
    invalidated_compactions: int
    chat: ChatOut


async def chat_out(service: ChatService, chat: Chat) -> ChatOut:
    return (await chat_outs(service, [chat]))[0]


async def chat_outs(service: ChatService, chats: list[Chat]) -> list[ChatOut]:
    """The chats as the API shows them: with queue length, labels and token totals."""
    summaries = await service.store.summaries.of([c.id for c in chats])  # one query
    out = []
    for c in chats:
        s = summaries[c.id]
        out.append(ChatOut.of(c, s.queued, s.labels, s.usage))
    return out
