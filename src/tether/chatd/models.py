"""Chat domain types: the chat row, its status machine, stored messages."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class ChatStatus(enum.StrEnum):
    WAITING = "waiting"  # idle, waiting for the user
    PENDING = "pending"  # queued for a worker
    RUNNING = "running"  # a worker runs a turn
    INTERRUPTING = "interrupting"  # the user asked the running turn to stop
    ERROR = "error"  # the last turn failed; last_error says why


# The whole chat state machine. Applied in SQL as compare-and-set (``db/chats.py``).
CHAT_TRANSITIONS: dict[ChatStatus, frozenset[ChatStatus]] = {
    ChatStatus.WAITING: frozenset({ChatStatus.PENDING}),
    ChatStatus.ERROR: frozenset({ChatStatus.PENDING}),
    ChatStatus.PENDING: frozenset({ChatStatus.RUNNING, ChatStatus.WAITING}),
    ChatStatus.RUNNING: frozenset(
        {ChatStatus.WAITING, ChatStatus.ERROR, ChatStatus.INTERRUPTING, ChatStatus.PENDING}
    ),
    ChatStatus.INTERRUPTING: frozenset({ChatStatus.WAITING, ChatStatus.ERROR, ChatStatus.PENDING}),
}


def sources_of(target: ChatStatus) -> frozenset[ChatStatus]:
    return frozenset(s for s, nxt in CHAT_TRANSITIONS.items() if target in nxt)


@dataclass(frozen=True)
class Chat:
    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    status: ChatStatus
    worker_id: uuid.UUID | None
    heartbeat_at: datetime | None
    last_error: str | None
    last_error_code: str | None
    parent_chat_id: uuid.UUID | None
    root_chat_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    build_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    model: str | None
    archived: bool
    interrupt_requested: bool
    created_at: datetime
    updated_at: datetime
    plan_mode: bool = False  # read-only turns with a plan file (docs/behaviour.md §5.7)
    # stripped copies of the instruction/skill parts last persisted (for UIs); None: none
    last_injected_context: list[dict[str, Any]] | None = None
    # first_message | auto | user: only first_message gets an automatic title (autotitle.py)
    title_source: str = "auto"

    @property
    def is_root(self) -> bool:
        return self.parent_chat_id is None

    @property
    def ancestor_ids(self) -> list[uuid.UUID]:
        """Parent first; tether allows one level of subagents."""
        return [self.parent_chat_id] if self.parent_chat_id else []


@dataclass(frozen=True)
class StoredMessage:
    id: uuid.UUID
    chat_id: uuid.UUID
    seq: int
    role: str
    parts: list[dict[str, Any]]
    visibility: str
    model: str | None
    created_at: datetime
    superseded: bool = False  # edited away (chatd/edits.py): not history any more


@dataclass(frozen=True)
class QueuedMessage:
    id: uuid.UUID
    chat_id: uuid.UUID
    parts: list[dict[str, Any]]
    created_at: datetime
