"""A :class:`~tether.domain.chat.Chat` record for unit tests: a running top-level chat with
no workspace, changed by keyword."""

from __future__ import annotations

import uuid
from typing import Any

from tether.domain.chat import Chat, ChatStatus
from tether.testing.clock import DEFAULT_START


def make_chat(chat_id: uuid.UUID, **changes: Any) -> Chat:
    values: dict[str, Any] = dict(
        id=chat_id,
        owner_id=uuid.UUID(int=1),
        title="t",
        status=ChatStatus.RUNNING,
        worker_id=None,
        heartbeat_at=None,
        last_error=None,
        last_error_code=None,
        parent_chat_id=None,
        root_chat_id=None,
        workspace_id=None,
        build_id=None,
        agent_id=None,
        model=None,
        archived=False,
        interrupt_requested=False,
        created_at=DEFAULT_START,
        updated_at=DEFAULT_START,
    )
    values.update(changes)
    return Chat(**values)
