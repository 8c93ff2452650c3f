"""The end of a turn (docs/behaviour.md §3.3 "Finish"): the usage of its model requests in
one statement, then ``finish_turn`` — ownership checked, the final status set, the next
queued message promoted — and the events that announce it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tether.channels import CHATS, chat_channel
from tether.chatd.compaction import LongChat
from tether.chatd.tools.base import ChatdDeps
from tether.chatd.turn.events import status_data
from tether.chatd.turn.recorder import TurnRecorder
from tether.domain.chat import Chat
from tether.errors import Conflict

log = logging.getLogger(__name__)


async def flush_usage(long: LongChat | None, recorder: TurnRecorder) -> None:
    """One statement for the usage of all the turn's model requests (was one each)."""
    rows, recorder.usage = recorder.usage, []
    if rows and long is not None:
        try:
            await long.record_usages(rows)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # accounting must never fail the turn
            log.warning("chat %s: storing usage failed: %s", recorder.chat_id, err)


async def finish_turn(
    deps: ChatdDeps, chat: Chat, worker_id: Any, error: str | None, error_code: str | None
) -> bool:
    """End the turn (``finish_turn``) and publish it; False when the chat is no longer
    this worker's."""
    deps.metrics.turn_outcome(error_code)
    try:
        final, promoted = await deps.chats.finish_turn(
            chat.id, worker_id, error=error, error_code=error_code
        )
    except Conflict:
        log.info("chat %s: no longer ours at the end of the turn; nothing finished", chat.id)
        return False
    if error is not None:
        deps.hub.publish(chat.id, "error", {"message": error, "code": error_code})
    if promoted is not None:
        deps.hub.publish_message(promoted)
        queued = await deps.chats.queued(chat.id)
        deps.hub.publish(
            chat.id,
            "queue_update",
            {
                "queued": [
                    {"id": str(q.id), "parts": q.parts, "created_at": q.created_at.isoformat()}
                    for q in queued
                ]
            },
        )
    deps.hub.publish(chat.id, "status", status_data(final))
    await deps.bus.publish(chat_channel(chat.id), {"type": "status", "status": final.status.value})
    if promoted is not None:
        await deps.bus.publish(CHATS, {"chat_id": str(chat.id)})
    return True
