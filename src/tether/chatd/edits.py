"""Editing a user message: the history from that message on is replaced and the chat runs
again (``PATCH /api/v1/chats/{id}/messages/{message_id}``, docs/behaviour.md §2.2).

Owner only (anyone else: 404, as for every chat). The chat must be idle (waiting or
error): a pending, running or interrupting chat → 409 ``chat_busy`` whose remediation names
interrupt. Only a user's own message still in the history can be edited → else 409
``message_not_editable``. The new content is checked like a sent message (text, images,
the per-user limit, the model's window) before anything changes; then one transaction
(db/chatedits.py) supersedes the message and all later ones, invalidates compactions whose
cut lies at or after it, appends the new message and makes the chat pending.

Every replica's history cache forgets the chat: this process's at once, the others' on the
``chats`` bus event that also wakes the workers (``{"type": "pending", "edited": true}``,
chatd/worker.py). Stream subscribers get an ``edit`` event (``superseded_from_seq``: drop
the messages from this ``seq`` on), the new message and the status.
"""

from __future__ import annotations

import uuid
from typing import Any

from tether.chatd.compaction import longchat_of
from tether.chatd.follow import status_data
from tether.chatd.service import WORKER_CHANNEL, Content, user_parts
from tether.chatd.usagelimits import usage_guard_of
from tether.db.chatedits import Edit, edit_user_message
from tether.errors import NotFound
from tether.workspaces.models import User


async def edit_message(
    graph: Any, actor: User, chat_id: uuid.UUID, message_id: uuid.UUID, content: Content
) -> Edit:
    service = graph.chat_service
    chat = await service.get(actor, chat_id)
    if chat.owner_id != actor.id:  # admins see others' chats, but do not write for them
        raise NotFound(f"chat {chat_id} not found")
    parts = user_parts(content, service.images)
    await usage_guard_of(graph).check(actor)
    await service.check_fits(chat.model, parts)
    edit = await edit_user_message(
        graph.engine, graph.clock, service.store, chat.id, message_id, parts
    )
    longchat_of(graph).cache.invalidate(chat.id)
    hub = service.hub
    hub.publish(
        chat.id,
        "edit",
        {
            "message_id": str(message_id),
            "new_message_id": str(edit.message.id),
            "superseded_from_seq": edit.superseded_from_seq,
            "invalidated_compactions": edit.invalidated_compactions,
        },
    )
    hub.publish_message(edit.message)
    hub.publish(chat.id, "status", status_data(edit.chat))
    await graph.bus.publish(
        WORKER_CHANNEL, {"chat_id": str(chat.id), "type": "pending", "edited": True}
    )
    return edit
