"""A well-formed history: every tool call has exactly one tool result, right after the
message that made the call (issue #9 §7).

Providers reject a request whose history has a tool call without a result, a result without
its call, or a result that is not adjacent to its call. A turn can end without the real
result: the user interrupts it, the server is stopped (SIGTERM) mid-tool, or the replica
running it dies and another takes the chat over. Two layers keep the history valid:

* **Persisted** (:func:`close_dangling_calls`): the first turn after a crash or takeover,
  and a turn that is shut down mid-tool, store an ``interrupted: …`` result for each call
  whose real result is lost — what ``tether chat show`` and the API show is well-formed.
* **In memory** (:func:`well_formed`): every request is normalised before it goes to the
  model — results moved right after their call (a synthetic result may have been stored
  after later messages), duplicates and orphan results dropped, anything still missing
  answered with an ``interrupted`` result. The database is never rewritten.

Tool calls are at-least-once: a call interrupted this way may or may not have run; the
result says so and the model decides whether to repeat it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any
from uuid import UUID

from tether.chatd import messages as cm
from tether.chatd.stream import ChatStreamHub
from tether.db.chats import ChatStore
from tether.domain.chat import StoredMessage

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
LOST_ON_TAKEOVER = (
    "the turn ended before the tool call finished (its server stopped or the turn failed); "
    "the call may or may not have run"
)
LOST_ON_SHUTDOWN = (
    "the server was shut down while the tool call ran; it may or may not have completed"
)
LOST_UNKNOWN = "the tool call did not complete"
BY_USER = "by the user"


def interrupted_result(call: cm.ToolCallPart, why: str) -> cm.ToolResultPart:
    """The synthetic result of ``call`` whose real result is lost."""
    return cm.ToolResultPart(
        tool_call_id=call.tool_call_id,
        tool_name=call.tool_name,
        result=f"{INTERRUPTED}: {why}",
        is_error=True,
        error_code=INTERRUPTED,
    )


def dangling_calls(history: Iterable[cm.ChatMessage]) -> list[cm.ToolCallPart]:
    """Tool calls of ``history`` that have no result, in order."""
    messages = list(history)
    answered = {
        p.tool_call_id for m in messages for p in m.parts if isinstance(p, cm.ToolResultPart)
    }
    return [
        p
        for m in messages
        if m.role == "assistant"
        for p in m.parts
        if isinstance(p, cm.ToolCallPart) and p.tool_call_id not in answered
    ]


def well_formed(history: Sequence[cm.ChatMessage], why: str = LOST_UNKNOWN) -> list[cm.ChatMessage]:
    """``history`` with each call's result right after the call's message (see the module
    docstring). Messages without tool parts are returned unchanged and in order."""
    calls = {
        p.tool_call_id
        for m in history
        if m.role == "assistant"
        for p in m.parts
        if isinstance(p, cm.ToolCallPart)
    }
    results: dict[str, cm.ToolResultPart] = {}
    for m in history:
        for p in m.parts:
            if isinstance(p, cm.ToolResultPart) and p.tool_call_id in calls:
                results.setdefault(p.tool_call_id, p)  # the first result wins
    if not calls and not any(m.role == "tool" for m in history):
        return list(history)
    out: list[cm.ChatMessage] = []
    for msg in history:
        if msg.role == "tool":
            # Results are placed after their call below; a tool message keeps what else it
            # carries (nothing, today).
            rest = [p for p in msg.parts if not isinstance(p, cm.ToolResultPart)]
            if rest:
                out.append(msg.model_copy(update={"parts": rest}))
            continue
        out.append(msg)
        if msg.role != "assistant":
            continue
        answers = [
            (
                results.pop(p.tool_call_id)
                if p.tool_call_id in results
                else interrupted_result(p, why)
            )
            for p in msg.parts
            if isinstance(p, cm.ToolCallPart)
        ]
        if answers:
            out.append(cm.ChatMessage(role="tool", parts=list(answers)))
    return out


async def close_dangling_calls(
    store: ChatStore, chat_id: UUID, calls: Sequence[cm.ToolCallPart], why: str
) -> StoredMessage | None:
    """Store one ``tool`` message with an ``interrupted: {why}`` result for each of
    ``calls``; returns it (None when there is nothing to close)."""
    if not calls:
        return None
    return await store.append_message(
        chat_id,
        role="tool",
        parts=cm.dump_parts([interrupted_result(c, why) for c in calls]),
    )


async def after_takeover(
    store: ChatStore,
    hub: ChatStreamHub,
    chat_id: UUID,
    history: list[cm.ChatMessage],
    *,
    clean_through: int = 0,
) -> list[cm.ChatMessage]:
    """At the start of a turn every call of the stored history must have a result: one
    without was cut off by a crash, a shutdown or a failed turn (its real result is lost).
    Stores the ``interrupted`` results and returns ``history`` with them appended.

    ``clean_through``: the messages up to this ``seq`` are known to answer all their calls
    (this process ended the chat's last turn with no call open, ``ChatState``); only the
    later ones are scanned, so a turn's cost does not grow with the chat. 0 scans all."""
    calls = dangling_calls(m for m in history if m.seq is None or m.seq > clean_through)
    stored = await close_dangling_calls(store, chat_id, calls, LOST_ON_TAKEOVER)
    if stored is None:
        return history
    log.warning(
        "chat %s: %d tool call(s) had no result; closed as interrupted", chat_id, len(calls)
    )
    hub.publish_message(stored)
    closed = cm.ChatMessage(
        role="tool", parts=cm.load_parts(stored.parts), seq=stored.seq, created_at=stored.created_at
    )
    return [*history, closed]


async def shielded(cleanup: Coroutine[Any, Any, None], *, timeout_s: float = 2.0) -> None:
    """Run ``cleanup`` to completion even though the calling task is being cancelled,
    within ``timeout_s``; a failure is logged (the next turn repairs the history)."""
    task = asyncio.ensure_future(cleanup)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(task)
    except TimeoutError:
        task.cancel()
        log.warning("closing interrupted tool calls took longer than %gs", timeout_s)
    except Exception as err:
        log.warning("closing interrupted tool calls failed: %s", err)
