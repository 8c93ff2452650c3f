"""Chat store: chats (status machine as compare-and-set, the binding triple), messages
(ordered by a per-chat ``seq``) and sending a user message (into the history, or onto the
queue while a turn runs).

:class:`ChatStore` is one object with the API the services use; its worker side
(claim, heartbeat, stale sweep, finish) is in ``db/chatclaims.py`` and the message queue
in ``db/chatqueue.py``, mixed in over the same engine and clock so a caller sees one
store. Statements shared inside a transaction live in ``db/chatrows.py``."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.clock import Clock
from tether.db.chatclaims import ChatWorkerOps
from tether.db.chatlabels import ChatLabelStore, label_filter
from tether.db.chatqueue import ChatQueueOps, enqueue_in
from tether.db.chatrows import (
    MESSAGES_FAST,
    chat_from_row,
    get_chat,
    insert_message_in,
    lock_chat_if,
    message_from_row,
)
from tether.db.chatsummary import ChatSummaries, ChatSummary, summary_columns, summary_from_row
from tether.db.engine import reading
from tether.db.fastexec import FastStatement
from tether.db.tables import chat_messages, chats
from tether.db.usage import UsageStore
from tether.domain.chat import Chat, ChatStatus, QueuedMessage, StoredMessage, sources_of
from tether.errors import Conflict, NotFound
from tether.ids import new_id


@functools.cache
def _settle(direct: tuple[str, ...], owned: bool, summary: bool = True) -> sa.Update:
    """A send's guarded UPDATE … RETURNING: one of ``direct`` (and of the bound owner, if
    ``owned``) → pending, returning the row and, with ``summary``, its summary
    (db/chatsummary.py: the send's answer needs no query of its own). Built once per shape:
    building it cost more CPU than running it."""
    where = [chats.c.id == sa.bindparam("p_chat_id"), chats.c.status.in_(direct)]
    if owned:
        where.append(chats.c.owner_id == sa.bindparam("p_owner_id"))
    return (
        chats.update()
        .where(*where)
        .values(
            status=ChatStatus.PENDING.value,
            last_error=None,
            last_error_code=None,
            updated_at=sa.bindparam("p_now", type_=chats.c.updated_at.type),
        )
        .returning(*chats.c, *(summary_columns() if summary else ()))
    )


@functools.cache
def _settle_fast(direct: tuple[str, ...], owned: bool, summary: bool = True) -> FastStatement:
    """:func:`_settle` to run with db/fastexec.py (the send's hot statement)."""
    return FastStatement(_settle(direct, owned, summary))


# What a send's ``check`` may change on the chat with the message (chatd/service.py send).
Changes = Mapping[str, Any]


class Submitted(NamedTuple):
    """What :meth:`ChatStore.submit_user_message` did: the chat as it is now, and either
    the persisted message (idle chat) or the queued one (busy chat)."""

    chat: Chat
    message: StoredMessage | None
    queued: QueuedMessage | None
    summary: ChatSummary | None  # the chat's, read by the same statement (persisted only)


class ChatStore(ChatWorkerOps, ChatQueueOps):
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self.labels = ChatLabelStore(engine)
        self.usage = UsageStore(engine)
        self.summaries = ChatSummaries(engine)  # queue, labels, usage: what the API adds

    # --- chats ----------------------------------------------------------------------------

    async def create(
        self,
        *,
        owner_id: uuid.UUID,
        title: str,
        first_message: list[dict[str, Any]] | None,
        workspace_id: uuid.UUID | None = None,
        build_id: uuid.UUID | None = None,
        agent_id: uuid.UUID | None = None,
        parent_chat_id: uuid.UUID | None = None,
        root_chat_id: uuid.UUID | None = None,
        model: str | None = None,
        copy_messages: list[StoredMessage] | None = None,
        plan_mode: bool = False,
        title_source: str = "auto",
    ) -> Chat:
        now = self._clock.now()
        chat_id = new_id()
        async with self._engine.begin() as conn:
            await conn.execute(
                chats.insert().values(
                    id=chat_id,
                    owner_id=owner_id,
                    title=title,
                    status=(ChatStatus.PENDING if first_message else ChatStatus.WAITING).value,
                    parent_chat_id=parent_chat_id,
                    root_chat_id=root_chat_id,
                    workspace_id=workspace_id,
                    build_id=build_id,
                    agent_id=agent_id,
                    model=model,
                    archived=False,
                    interrupt_requested=False,
                    created_at=now,
                    updated_at=now,
                    plan_mode=plan_mode,
                    title_source=title_source,
                )
            )
            for msg in copy_messages or []:
                await insert_message_in(
                    conn,
                    chat_id,
                    msg.role,
                    msg.parts,
                    msg.visibility,
                    msg.model,
                    now=self._clock.now(),
                )
            if first_message:
                await insert_message_in(
                    conn, chat_id, "user", first_message, "both", None, now=self._clock.now()
                )
            return await get_chat(conn, chat_id)

    async def get(self, chat_id: uuid.UUID) -> Chat:
        async with reading(self._engine) as conn:
            return await get_chat(conn, chat_id)

    async def transition(
        self,
        chat_id: uuid.UUID,
        target: ChatStatus,
        *,
        worker_id: uuid.UUID | None = None,
        **values: Any,
    ) -> Chat:
        """Compare-and-set ``status`` to ``target`` from any legal source state (and, when
        ``worker_id`` is given, only if this worker owns the chat). Conflict otherwise."""
        conds = [chats.c.id == chat_id, chats.c.status.in_([s.value for s in sources_of(target)])]
        if worker_id is not None:
            conds.append(chats.c.worker_id == worker_id)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                chats.update()
                .where(*conds)
                .values(status=target.value, updated_at=self._clock.now(), **values)
            )
            chat = await get_chat(conn, chat_id)
        if not result.rowcount:
            raise Conflict(f"chat is {chat.status.value}; cannot become {target.value}")
        return chat

    async def set_fields(self, chat_id: uuid.UUID, **values: Any) -> Chat:
        async with self._engine.begin() as conn:
            await conn.execute(
                chats.update()
                .where(chats.c.id == chat_id)
                .values(updated_at=self._clock.now(), **values)
            )
            return await get_chat(conn, chat_id)

    async def set_auto_title(self, chat_id: uuid.UUID, title: str) -> Chat | None:
        """Write an automatic title unless a title was set meanwhile (chatd/autotitle.py)."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    chats.update()
                    .where(chats.c.id == chat_id, chats.c.title_source == "first_message")
                    .values(title=title, title_source="auto", updated_at=self._clock.now())
                    .returning(*chats.c)
                )
            ).first()
        return chat_from_row(row) if row is not None else None

    # --- binding ----------------------------------------------------------------------------

    async def update_workspace_binding(
        self,
        chat_id: uuid.UUID,
        *,
        workspace_id: uuid.UUID,
        build_id: uuid.UUID | None,
        agent_id: uuid.UUID | None = None,
    ) -> Chat:
        return await self.set_fields(
            chat_id, workspace_id=workspace_id, build_id=build_id, agent_id=agent_id
        )

    async def update_build_agent_binding(
        self, chat_id: uuid.UUID, *, build_id: uuid.UUID, agent_id: uuid.UUID
    ) -> Chat:
        """Build and agent are always written together (the agent belongs to the build)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                chats.update()
                .where(chats.c.id == chat_id)
                .values(build_id=build_id, agent_id=agent_id)
            )
            return await get_chat(conn, chat_id)

    async def update_build_agent_binding_if(
        self,
        chat_id: uuid.UUID,
        *,
        workspace_id: uuid.UUID,
        build_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> Chat:
        """Write ``build_id`` + ``agent_id`` only while the chat is still bound to
        ``workspace_id``: one guarded ``UPDATE … RETURNING``, so a concurrent re-bind is never
        overwritten with an agent of the old workspace. Raises :class:`Conflict` when the
        guard fails and :class:`NotFound` when the chat does not exist."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    chats.update()
                    .where(chats.c.id == chat_id, chats.c.workspace_id == workspace_id)
                    .values(build_id=build_id, agent_id=agent_id)
                    .returning(*chats.c)
                )
            ).first()
            if row is not None:
                return chat_from_row(row)
            current = await get_chat(conn, chat_id)  # NotFound when the chat is gone
        raise Conflict(
            f"chat is bound to workspace {current.workspace_id}, not {workspace_id}; "
            "not re-binding its agent"
        )

    async def last_message_seq(self, chat_id: uuid.UUID) -> int:
        """The ``seq`` of the chat's last persisted message (0 when it has none)."""
        async with reading(self._engine) as conn:
            seq = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.max(chat_messages.c.seq), 0)).where(
                    chat_messages.c.chat_id == chat_id
                )
            )
        return int(seq or 0)

    # --- messages -----------------------------------------------------------------------------

    async def insert_message(
        self, conn: AsyncConnection, chat_id: uuid.UUID, parts: list[dict[str, Any]]
    ) -> StoredMessage:
        """A user message, inside the caller's transaction (db/chatedits.py)."""
        return await insert_message_in(
            conn, chat_id, "user", parts, "both", None, now=self._clock.now()
        )

    async def append_message(
        self,
        chat_id: uuid.UUID,
        *,
        role: str,
        parts: list[dict[str, Any]],
        visibility: str = "both",
        model: str | None = None,
    ) -> StoredMessage:
        for _ in range(5):
            try:
                async with self._engine.begin() as conn:
                    return await insert_message_in(
                        conn, chat_id, role, parts, visibility, model, now=self._clock.now()
                    )
            except IntegrityError:
                continue  # a concurrent writer took this seq; take the next
        raise Conflict("could not append the message; try again")

    async def send_user_message(
        self, chat_id: uuid.UUID, parts: list[dict[str, Any]]
    ) -> tuple[Chat, StoredMessage]:
        """Idle chat (waiting | error): persist the message and make it pending, atomically
        (the send's own guarded statement, without an owner); Conflict otherwise."""
        idle = (ChatStatus.WAITING.value, ChatStatus.ERROR.value)
        async with self._engine.begin() as conn:
            values = {"p_chat_id": chat_id, "p_owner_id": None, "p_now": self._clock.now()}
            # no summary: a subagent send does not answer with one (chatd/subagentops.py)
            row = await _settle_fast(idle, False, False).first(conn, values)
            if row is None:
                chat = await get_chat(conn, chat_id)
                raise Conflict(f"chat is {chat.status.value}")
            message = await insert_message_in(
                conn, chat_id, "user", parts, "both", None, now=self._clock.now()
            )
            return chat_from_row(row), message

    async def submit_user_message(
        self,
        chat_id: uuid.UUID,
        parts: list[dict[str, Any]],
        *,
        max_queued: int,
        join_pending: bool = False,
        owner_id: uuid.UUID | None = None,
        check: Callable[[Chat], Awaitable[Changes | None]] | None = None,
    ) -> Submitted:
        """Send a user message, atomically against the worker finishing a turn.

        Idle (waiting | error) → persisted, chat becomes pending, with the chat's summary.
        Busy (pending | running | interrupting) → queued; QueueFull past ``max_queued``.
        With ``join_pending`` a pending chat (no worker has started the turn) takes the
        message into its history directly instead of queueing it.

        ``owner_id``: only a chat of this owner (another's is NotFound, like a missing one),
        checked by the same guarded statement. ``check`` sees the chat before the message is
        written and may return columns to change on it (a model or plan-mode switch) in the
        same transaction; what it raises rolls the send back."""
        direct = [ChatStatus.WAITING, ChatStatus.ERROR]
        if join_pending:
            direct.append(ChatStatus.PENDING)
        busy = [s for s in ChatStatus if s not in direct]
        owned = [chats.c.owner_id == owner_id] if owner_id is not None else []
        settle = _settle_fast(tuple(s.value for s in direct), owner_id is not None)
        for _ in range(3):
            async with self._engine.begin() as conn:
                # Guarded UPDATE … RETURNING: locks and settles the row in one statement
                # (inserting the message does not change the chat row).
                row = await settle.first(
                    conn, {"p_chat_id": chat_id, "p_owner_id": owner_id, "p_now": self._clock.now()}
                )
                if row is not None:
                    chat = await self._checked(conn, chat_from_row(row), check)
                    message = await insert_message_in(
                        conn, chat_id, "user", parts, "both", None, now=self._clock.now()
                    )
                    return Submitted(chat, message, None, summary_from_row(row))
                locked = await lock_chat_if(conn, chat_id, busy, *owned)
                if locked is not None:  # queueing does not change the chat row either
                    locked = await self._checked(conn, locked, check)
                    queued = await enqueue_in(
                        conn, chat_id, parts, max_queued=max_queued, now=self._clock.now()
                    )
                    return Submitted(locked, None, queued, None)
                current = await get_chat(conn, chat_id)  # NotFound if it does not exist
                if owner_id is not None and current.owner_id != owner_id:
                    raise NotFound(f"chat {chat_id} not found")
            # the status moved between the two guards (a turn just ended); look again
        raise Conflict("the chat changed state repeatedly; try again")

    async def _checked(
        self,
        conn: AsyncConnection,
        chat: Chat,
        check: Callable[[Chat], Awaitable[Changes | None]] | None,
    ) -> Chat:
        """Run a send's ``check`` on the locked chat and write the changes it asks for."""
        changes = await check(chat) if check is not None else None
        if not changes:
            return chat
        row = (
            await conn.execute(
                chats.update()
                .where(chats.c.id == chat.id)
                .values(updated_at=self._clock.now(), **changes)
                .returning(*chats.c)
            )
        ).first()
        return chat_from_row(row)

    async def messages(
        self,
        chat_id: uuid.UUID,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        include_superseded: bool = False,
    ) -> list[StoredMessage]:
        """The chat's history in ``seq`` order; edited-away messages only on request."""
        query = MESSAGES_FAST[include_superseded, limit is not None]
        values: dict[str, Any] = {"p_chat_id": chat_id, "p_after_seq": after_seq}
        if limit is not None:
            values["p_limit"] = limit
        async with reading(self._engine) as conn:
            rows = await query.all(conn, values)
        return [message_from_row(r) for r in rows]

    # Last in the class on purpose: a method named ``list`` shadows the builtin for the
    # annotations of every method defined after it (mypy ``valid-type``).
    async def list(
        self,
        *,
        owner_id: uuid.UUID,
        archived: bool | None = False,
        status: ChatStatus | None = None,
        parent_chat_id: uuid.UUID | None = None,
        roots_only: bool = False,
        limit: int = 50,
        search: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> list[Chat]:
        """``search``: a case-insensitive substring of the title; ``labels``: every pair
        must be on the chat (``db/chatlabels.py``)."""
        query = sa.select(chats).where(chats.c.owner_id == owner_id)
        if search:
            escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(sa.func.lower(chats.c.title).like(f"%{escaped}%", escape="\\"))
        for key, value in (labels or {}).items():
            query = query.where(label_filter(chats.c.id, key, value))
        if archived is not None:
            query = query.where(chats.c.archived.is_(archived))
        if status is not None:
            query = query.where(chats.c.status == status.value)
        if parent_chat_id is not None:
            query = query.where(chats.c.parent_chat_id == parent_chat_id)
        if roots_only:
            query = query.where(chats.c.parent_chat_id.is_(None))
        query = query.order_by(chats.c.updated_at.desc()).limit(limit)
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return [chat_from_row(r) for r in rows]
