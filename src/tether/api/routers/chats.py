"""Chats: create, list, show, history, send, interrupt, archive, children, live stream (SSE).

The stream resumes from the standard ``Last-Event-ID`` header (what an ``EventSource``
sends on reconnect) or, failing that, the ``after`` query parameter; ids are ``"seq.n"``
(see :mod:`tether.chatd.stream`). It sends ``message``, ``message_part``, ``status``,
``error``, ``retry`` and ``queue_update`` events and a ``: ping`` comment every ~15 s.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from tether.api.auth import CurrentUser
from tether.api.chatschemas import (
    ArchiveChat,
    ChatOut,
    CreateChat,
    EditMessage,
    EditOut,
    MessageOut,
    MessagePageOut,
    QueuedOut,
    SendMessage,
    SendOut,
    UpdateChat,
    chat_out,
    chat_outs,
)
from tether.api.deps import (
    ChatServiceDep,
    ClockDep,
    EngineDep,
    LongChatDep,
    MessageEditorDep,
    ModelsDep,
    SettingsDep,
    UsageGuardDep,
)
from tether.api.history_page import backward_page
from tether.api.limits import SEQ_MAX, TITLE_MAX
from tether.api.revocation import StreamGuardDep
from tether.api.sse import SSE_RESPONSE, sse_chunk, sse_response
from tether.chatd.follow import Pacing, follow_chat_batches
from tether.chatd.service import ChatService, SendResult
from tether.chatd.stream import parse_event_id
from tether.chatd.titles import generate_title
from tether.db.chatlabels import LABELS_MAX
from tether.domain.chat import Chat, ChatStatus
from tether.errors import InvalidInput

TITLE_HISTORY_MESSAGES = 20  # the start of the conversation names it

router = APIRouter(prefix="/api/v1/chats", tags=["chats"])


def _label_pairs(raw: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise InvalidInput(f"label filter {item[:80]!r}: use key:value", field="label")
        pairs[key] = value
    return pairs


@router.post("", status_code=201)
async def create(
    service: ChatServiceDep, guard: UsageGuardDep, body: CreateChat, user: CurrentUser
) -> ChatOut:
    await guard.check(user)  # 409 usage_limit_exceeded
    chat = await service.create(
        user,
        body.content,
        workspace_id=body.workspace_id,
        model=body.model,
        title=body.title,
        plan_mode=body.plan_mode,
        labels=body.labels,
    )
    return await chat_out(service, chat)


@router.get("")
async def list_chats(
    service: ChatServiceDep,
    user: CurrentUser,
    archived: bool = False,
    status: ChatStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    q: Annotated[str | None, Query(max_length=TITLE_MAX)] = None,
    label: Annotated[list[str] | None, Query(max_length=LABELS_MAX)] = None,
) -> list[ChatOut]:
    """``q``: a case-insensitive substring of the title; ``label=key:value`` (repeatable):
    chats carrying every one of these labels."""
    chats = await service.list(
        user,
        archived=archived,
        status=status,
        limit=limit,
        search=q or None,
        labels=_label_pairs(label or []),
    )
    return await chat_outs(service, chats)


@router.patch("/{chat_id}")
async def update(
    service: ChatServiceDep, chat_id: uuid.UUID, body: UpdateChat, user: CurrentUser
) -> ChatOut:
    """Rename the chat and/or replace its labels."""
    chat = await service.update(user, chat_id, title=body.title, labels=body.labels)
    return await chat_out(service, chat)


@router.get("/{chat_id}")
async def show(service: ChatServiceDep, chat_id: uuid.UUID, user: CurrentUser) -> ChatOut:
    return await chat_out(service, await service.get(user, chat_id))


@router.get("/{chat_id}/messages")
async def messages(
    service: ChatServiceDep,
    longchat: LongChatDep,
    engine: EngineDep,
    chat_id: uuid.UUID,
    user: CurrentUser,
    after_seq: Annotated[int, Query(ge=0, le=SEQ_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_seq: Annotated[int | None, Query(ge=1, le=SEQ_MAX)] = None,
    latest: bool = False,
    include_superseded: bool = False,
) -> MessagePageOut:
    """Forwards from ``after_seq``, or backwards: ``latest=true`` is the newest page,
    ``before_seq`` the page before that message (``api/history_page.py``).
    ``include_superseded``: also the messages an edit replaced (marked ``superseded``)."""
    if before_seq is not None or latest:
        back = await backward_page(
            service,
            engine,
            longchat,
            user,
            chat_id,
            before_seq,
            limit,
            after_seq,
            include_superseded,
        )
        return MessagePageOut(
            messages=[MessageOut.of(m, back.compacted_through) for m in back.messages],
            next_after_seq=None,
            prev_before_seq=back.prev_before_seq,
        )
    page = await service.messages(
        user, chat_id, after_seq=after_seq, limit=limit, include_superseded=include_superseded
    )
    latest_c = await longchat.store.latest(chat_id)
    through = latest_c.through_seq if latest_c is not None else 0
    return MessagePageOut(
        messages=[MessageOut.of(m, through) for m in page.messages],
        next_after_seq=page.next_after_seq,
    )


@router.post("/{chat_id}/messages")
async def send(
    service: ChatServiceDep,
    guard: UsageGuardDep,
    chat_id: uuid.UUID,
    body: SendMessage,
    user: CurrentUser,
) -> SendOut:
    await guard.check(user)  # 409 usage_limit_exceeded
    result = await service.send(
        user, chat_id, body.content, busy=body.busy, model=body.model, plan_mode=body.plan_mode
    )
    return SendOut(
        message=MessageOut.of(result.message) if result.message else None,
        queued_message=QueuedOut.of(result.queued_message) if result.queued_message else None,
        queued=result.queued,
        chat=await _sent_chat(service, result),
    )


async def _sent_chat(service: ChatService, result: SendResult) -> ChatOut:
    """The chat of a send's answer: a persisted send read its summary with the chat."""
    s = result.summary
    if s is None:
        return await chat_out(service, result.chat)
    return ChatOut.of(result.chat, s.queued, s.labels, s.usage)


@router.patch(
    "/{chat_id}/messages/{message_id}",
    responses={409: {"description": "chat_busy, message_not_editable, usage_limit_exceeded"}},
)
async def edit(
    service: ChatServiceDep,
    edit_message: MessageEditorDep,
    chat_id: uuid.UUID,
    message_id: uuid.UUID,
    body: EditMessage,
    user: CurrentUser,
) -> EditOut:
    """Replace a user message of an idle chat: it and every later message are superseded,
    compactions from it on are invalidated, and the chat runs again (chatd/edits.py)."""
    done = await edit_message(user, chat_id, message_id, body.content)
    return EditOut(
        message=MessageOut.of(done.message),
        superseded_from_seq=done.superseded_from_seq,
        invalidated_compactions=done.invalidated_compactions,
        chat=await chat_out(service, done.chat),
    )


@router.get("/{chat_id}/queue")
async def queue(service: ChatServiceDep, chat_id: uuid.UUID, user: CurrentUser) -> list[QueuedOut]:
    return [QueuedOut.of(q) for q in await service.queued(user, chat_id)]


@router.post("/{chat_id}/interrupt")
async def interrupt(service: ChatServiceDep, chat_id: uuid.UUID, user: CurrentUser) -> ChatOut:
    return await chat_out(service, await service.interrupt(user, chat_id))


@router.post("/{chat_id}/archive")
async def archive(
    service: ChatServiceDep, chat_id: uuid.UUID, user: CurrentUser, body: ArchiveChat | None = None
) -> ChatOut:
    archived = body.archived if body is not None else True
    return await chat_out(service, await service.archive(user, chat_id, archived))


@router.post("/{chat_id}/title/regenerate")
async def regenerate_title(
    service: ChatServiceDep,
    models: ModelsDep,
    clock: ClockDep,
    settings: SettingsDep,
    chat_id: uuid.UUID,
    user: CurrentUser,
) -> ChatOut:
    """Ask the chat's model for a new title (``chatd/titles.py``); provider failures are
    typed (502/504) and leave the title as it was."""
    chat = await service.get(user, chat_id)
    history = await service.store.messages(chat.id, limit=TITLE_HISTORY_MESSAGES)
    title = await generate_title(
        await models.model(chat.model),
        history,
        clock=clock,
        timeout_s=settings.model_request_timeout_s,
    )
    chat = await service.store.set_fields(chat.id, title=title, title_source="auto")
    return await chat_out(service, chat)


@router.get("/{chat_id}/children")
async def children(service: ChatServiceDep, chat_id: uuid.UUID, user: CurrentUser) -> list[ChatOut]:
    return await chat_outs(service, await service.children(user, chat_id))


@router.get("/{chat_id}/stream", responses=SSE_RESPONSE)
async def stream(
    request: Request,
    service: ChatServiceDep,
    guard: StreamGuardDep,
    chat_id: uuid.UUID,
    user: CurrentUser,
    after: Annotated[str | None, Query(max_length=64)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Server-sent events of the chat, from the resume point (``Last-Event-ID`` wins over
    ``after``; none → from the first message)."""
    chat = await service.get(user, chat_id)  # 404 before the stream starts
    resume = parse_event_id(last_event_id or after)
    return sse_response(guard.stream(request, _events(service, chat, resume)))


async def _events(service: ChatService, chat: Chat, resume: tuple[int, int]) -> AsyncIterator[str]:
    """One chunk per wake-up of the follower. A client that leaves is noticed by the
    response (Starlette cancels the stream on ``http.disconnect``; a failed write ends it)."""
    complete = service.stream_complete
    pacing = Pacing(
        poll_s=service.stream_poll_s,
        ping_s=service.stream_ping_s,
        fallback_poll_s=service.stream_fallback_poll_s,
        complete=complete,
    )
    # the row just read is the first status where every later change reaches this hub
    local = service.stream_remote is None and complete is not None and complete()
    snapshot = chat if local else None
    batches = follow_chat_batches(
        service.store,
        service.hub,
        chat.id,
        after=resume,
        pacing=pacing,
        remote=service.stream_remote,
        snapshot=snapshot,
    )
    async with contextlib.aclosing(batches):
        async for batch in batches:
            yield sse_chunk((item.event, item.data, item.id) for item in batch)
