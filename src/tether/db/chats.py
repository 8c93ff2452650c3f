"""Chat store: chats (status machine as compare-and-set, the binding triple), messages
(ordered by a per-chat ``seq``) and the queue of user messages sent while a turn runs.

Claiming is one guarded statement: ``UPDATE … WHERE id IN (oldest pending) AND
status = 'pending' RETURNING id``; on PostgreSQL the inner select adds
``FOR UPDATE SKIP LOCKED`` (SQLAlchemy silently drops it on SQLite, where the single
writer makes the guard enough)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.chatd.models import (
    Chat,
    ChatStatus,
    QueuedMessage,
    StoredMessage,
    sources_of,
)
from tether.clock import Clock, as_utc
from tether.db.chatlabels import ChatLabelStore, label_filter
from tether.db.tables import chat_messages, chat_queued_messages, chats
from tether.errors import Conflict, NotFound, QueueFull
from tether.ids import new_id


def _chat(row: Any) -> Chat:
    return Chat(
        id=row.id,
        owner_id=row.owner_id,
        title=row.title,
        status=ChatStatus(row.status),
        worker_id=row.worker_id,
        heartbeat_at=as_utc(row.heartbeat_at),
        last_error=row.last_error,
        last_error_code=row.last_error_code,
        parent_chat_id=row.parent_chat_id,
        root_chat_id=row.root_chat_id,
        workspace_id=row.workspace_id,
        build_id=row.build_id,
        agent_id=row.agent_id,
        model=row.model,
        archived=row.archived,
        interrupt_requested=row.interrupt_requested,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
        plan_mode=bool(row.plan_mode),
        last_injected_context=row.last_injected_context,
    )


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        chat_id=row.chat_id,
        seq=row.seq,
        role=row.role,
        parts=list(row.parts),
        visibility=row.visibility,
        model=row.model,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
    )


class ChatStore:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self.labels = ChatLabelStore(engine)

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
                )
            )
            for msg in copy_messages or []:
                await self._insert_message(
                    conn, chat_id, msg.role, msg.parts, msg.visibility, msg.model
                )
            if first_message:
                await self._insert_message(conn, chat_id, "user", first_message, "both", None)
            return await self._get(conn, chat_id)

    async def get(self, chat_id: uuid.UUID) -> Chat:
        async with self._engine.connect() as conn:
            return await self._get(conn, chat_id)

    async def _get(self, conn: AsyncConnection, chat_id: uuid.UUID) -> Chat:
        row = (await conn.execute(sa.select(chats).where(chats.c.id == chat_id))).first()
        if row is None:
            raise NotFound(f"chat {chat_id} not found")
        return _chat(row)

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
            chat = await self._get(conn, chat_id)
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
            return await self._get(conn, chat_id)

    # --- worker -------------------------------------------------------------------------

    async def claim(self, worker_id: uuid.UUID, *, limit: int, probe: bool = True) -> list[Chat]:
        """Claim up to ``limit`` pending chats, oldest first. ``probe``: look first (for a
        timer poll, which usually finds nothing); a worker woken by a ``chats`` event
        passes False, as a chat is then most likely pending."""
        now = self._clock.now()
        oldest = (
            sa.select(chats.c.id)
            .where(chats.c.status == ChatStatus.PENDING.value)
            .order_by(chats.c.updated_at)
            .limit(limit)
        )
        values = {
            "status": ChatStatus.RUNNING.value,
            "worker_id": worker_id,
            "started_at": now,
            "heartbeat_at": now,
            "interrupt_requested": False,
            "updated_at": now,
        }
        # A timer poll usually finds nothing pending. Look first on a read-only connection
        # (as ``claim_job`` does): no write transaction, so no write lock for turns to queue
        # behind on SQLite and no row locks on PostgreSQL.
        if probe:
            async with self._engine.connect() as conn:
                pending = sa.select(chats.c.id).where(chats.c.status == ChatStatus.PENDING.value)
                if (await conn.execute(pending.limit(1))).first() is None:
                    return []
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # A CTE is materialised once; an IN (… LIMIT n) subquery may be re-run by
                # the planner and claim more than n rows.
                picked = oldest.with_for_update(skip_locked=True).cte("picked")
                stmt = chats.update().where(chats.c.id == picked.c.id)
            else:
                stmt = chats.update().where(chats.c.id.in_(oldest.scalar_subquery()))
            # The claimed rows come back with RETURNING (no second SELECT): ordered by
            # creation here, as the SELECT did.
            rows = (
                await conn.execute(
                    stmt.where(chats.c.status == ChatStatus.PENDING.value)
                    .values(**values)
                    .returning(*chats.c)
                )
            ).all()
        return sorted((_chat(r) for r in rows), key=lambda c: c.created_at)

    async def heartbeat(self, worker_id: uuid.UUID, chat_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Refresh heartbeats; returns the ids this worker still owns."""
        if not chat_ids:
            return set()
        async with self._engine.begin() as conn:
            ids = (
                (
                    await conn.execute(
                        chats.update()
                        .where(
                            chats.c.id.in_(chat_ids),
                            chats.c.worker_id == worker_id,
                            chats.c.status.in_(
                                [ChatStatus.RUNNING.value, ChatStatus.INTERRUPTING.value]
                            ),
                        )
                        .values(heartbeat_at=self._clock.now())
                        .returning(chats.c.id)
                    )
                )
                .scalars()
                .all()
            )
        return set(ids)

    async def recover_stale(
        self, older_than: datetime, *, keep: Collection[uuid.UUID] = ()
    ) -> list[uuid.UUID]:
        """Running chats whose heartbeat is older than ``older_than`` go back to pending;
        ``keep`` are chats the caller knows alive (its own running turns)."""
        stale = [
            chats.c.status.in_([ChatStatus.RUNNING.value, ChatStatus.INTERRUPTING.value]),
            chats.c.heartbeat_at < older_than,
        ]
        if keep:
            stale.append(chats.c.id.not_in(list(keep)))
        async with self._engine.begin() as conn:
            ids = (
                (
                    await conn.execute(
                        chats.update()
                        .where(*stale)
                        .values(
                            status=ChatStatus.PENDING.value,
                            worker_id=None,
                            updated_at=self._clock.now(),
                        )
                        .returning(chats.c.id)
                    )
                )
                .scalars()
                .all()
            )
        return list(ids)

    async def release_worker(self, worker_id: uuid.UUID) -> list[uuid.UUID]:
        """Shutdown: this worker's running chats go back to pending for another worker."""
        async with self._engine.begin() as conn:
            ids = (
                (
                    await conn.execute(
                        chats.update()
                        .where(
                            chats.c.worker_id == worker_id,
                            chats.c.status.in_(
                                [ChatStatus.RUNNING.value, ChatStatus.INTERRUPTING.value]
                            ),
                        )
                        .values(
                            status=ChatStatus.PENDING.value,
                            worker_id=None,
                            updated_at=self._clock.now(),
                        )
                        .returning(chats.c.id)
                    )
                )
                .scalars()
                .all()
            )
        return list(ids)

    async def finish_turn(
        self,
        chat_id: uuid.UUID,
        worker_id: uuid.UUID,
        *,
        error: str | None = None,
        error_code: str | None = None,
    ) -> tuple[Chat, StoredMessage | None]:
        """End a turn in one transaction: verify ownership, promote the oldest queued
        message (→ pending) or settle (waiting | error). Returns the chat and the
        promoted message, if any. Conflict if this worker no longer owns the chat."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            # Lock the row first (a guarded no-op UPDATE: row lock on PostgreSQL, the write
            # lock on SQLite), so a concurrent ``submit_user_message`` either lands its queued
            # message before we look at the queue or sees the settled status after us.
            if (
                await self._lock_if(
                    conn,
                    chat_id,
                    [ChatStatus.RUNNING, ChatStatus.INTERRUPTING],
                    chats.c.worker_id == worker_id,
                )
                is None
            ):
                raise Conflict("chat is no longer owned by this worker")
            promoted = await self._promote_queued(conn, chat_id)
            if promoted is not None:
                status = ChatStatus.PENDING
            else:
                status = ChatStatus.ERROR if error else ChatStatus.WAITING
            row = (
                await conn.execute(
                    chats.update()
                    .where(chats.c.id == chat_id)
                    .values(
                        status=status.value,
                        worker_id=None,
                        heartbeat_at=None,
                        interrupt_requested=False,
                        last_error=error,
                        last_error_code=error_code,
                        updated_at=now,
                    )
                    .returning(*chats.c)
                )
            ).one()
            return _chat(row), promoted

    async def _lock_if(
        self,
        conn: AsyncConnection,
        chat_id: uuid.UUID,
        statuses: list[ChatStatus],
        *extra: sa.ColumnElement[bool],
    ) -> Chat | None:
        """Lock the chat row for this transaction if it is in one of ``statuses``; returns
        the (unchanged) chat then, else None."""
        row = (
            await conn.execute(
                chats.update()
                .where(
                    chats.c.id == chat_id,
                    chats.c.status.in_([s.value for s in statuses]),
                    *extra,
                )
                .values(status=chats.c.status)
                .returning(*chats.c)
            )
        ).first()
        return _chat(row) if row is not None else None

    async def cancel_pending(self, chat_id: uuid.UUID) -> tuple[Chat, StoredMessage | None]:
        """Interrupt a chat no worker has claimed yet: the oldest queued message is promoted
        (the chat stays pending with it), or the chat settles to ``waiting``. Conflict if the
        chat is not pending (e.g. a worker claimed it meanwhile)."""
        async with self._engine.begin() as conn:
            if await self._lock_if(conn, chat_id, [ChatStatus.PENDING]) is None:
                chat = await self._get(conn, chat_id)
                raise Conflict(f"chat is {chat.status.value}; only a pending chat can be cancelled")
            promoted = await self._promote_queued(conn, chat_id)
            if promoted is None:
                await conn.execute(
                    chats.update()
                    .where(chats.c.id == chat_id)
                    .values(
                        status=ChatStatus.WAITING.value,
                        interrupt_requested=False,
                        updated_at=self._clock.now(),
                    )
                )
            return await self._get(conn, chat_id), promoted

    async def _promote_queued(
        self, conn: AsyncConnection, chat_id: uuid.UUID
    ) -> StoredMessage | None:
        queued = (
            await conn.execute(
                sa.select(chat_queued_messages)
                .where(chat_queued_messages.c.chat_id == chat_id)
                .order_by(chat_queued_messages.c.created_at, chat_queued_messages.c.id)
                .limit(1)
            )
        ).first()
        if queued is None:
            return None
        await conn.execute(
            chat_queued_messages.delete().where(chat_queued_messages.c.id == queued.id)
        )
        return await self._insert_message(conn, chat_id, "user", list(queued.parts), "both", None)

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
            return await self._get(conn, chat_id)

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
                return _chat(row)
            current = await self._get(conn, chat_id)  # NotFound when the chat is gone
        raise Conflict(
            f"chat is bound to workspace {current.workspace_id}, not {workspace_id}; "
            "not re-binding its agent"
        )

    async def last_message_seq(self, chat_id: uuid.UUID) -> int:
        """The ``seq`` of the chat's last persisted message (0 when it has none)."""
        async with self._engine.connect() as conn:
            seq = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.max(chat_messages.c.seq), 0)).where(
                    chat_messages.c.chat_id == chat_id
                )
            )
        return int(seq or 0)

    # --- messages -----------------------------------------------------------------------------

    async def _insert_message(
        self,
        conn: AsyncConnection,
        chat_id: uuid.UUID,
        role: str,
        parts: list[dict[str, Any]],
        visibility: str,
        model: str | None,
    ) -> StoredMessage:
        # One statement (was SELECT max + INSERT + SELECT): the next seq is computed inside
        # the INSERT and the stored row comes back with RETURNING. A concurrent writer that
        # took the same seq still fails the unique constraint (append_message retries).
        next_seq = (
            sa.select(sa.func.coalesce(sa.func.max(chat_messages.c.seq), 0) + 1)
            .where(chat_messages.c.chat_id == chat_id)
            .scalar_subquery()
        )
        row = (
            await conn.execute(
                chat_messages.insert()
                .values(
                    id=new_id(),
                    chat_id=chat_id,
                    seq=next_seq,
                    role=role,
                    parts=parts,
                    visibility=visibility,
                    model=model,
                    created_at=self._clock.now(),
                )
                .returning(*chat_messages.c)
            )
        ).one()
        return _message(row)

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
                    return await self._insert_message(conn, chat_id, role, parts, visibility, model)
            except IntegrityError:
                continue  # a concurrent writer took this seq; take the next
        raise Conflict("could not append the message; try again")

    async def send_user_message(
        self, chat_id: uuid.UUID, parts: list[dict[str, Any]]
    ) -> tuple[Chat, StoredMessage]:
        """Idle chat (waiting | error): persist the message and make it pending, atomically."""
        idle = [ChatStatus.WAITING.value, ChatStatus.ERROR.value]
        async with self._engine.begin() as conn:
            result = await conn.execute(
                chats.update()
                .where(chats.c.id == chat_id, chats.c.status.in_(idle))
                .values(
                    status=ChatStatus.PENDING.value,
                    last_error=None,
                    last_error_code=None,
                    updated_at=self._clock.now(),
                )
            )
            if not result.rowcount:
                chat = await self._get(conn, chat_id)
                raise Conflict(f"chat is {chat.status.value}")
            message = await self._insert_message(conn, chat_id, "user", parts, "both", None)
            return await self._get(conn, chat_id), message

    async def submit_user_message(
        self,
        chat_id: uuid.UUID,
        parts: list[dict[str, Any]],
        *,
        max_queued: int,
        join_pending: bool = False,
    ) -> tuple[Chat, StoredMessage | None, QueuedMessage | None]:
        """Send a user message, atomically against the worker finishing a turn.

        Idle (waiting | error) → persisted, chat becomes pending: ``(chat, message, None)``.
        Busy (pending | running | interrupting) → queued: ``(chat, None, queued)``; QueueFull
        past ``max_queued``. With ``join_pending`` a pending chat (no worker has started
        the turn) takes the message into its history directly instead of queueing it."""
        direct = [ChatStatus.WAITING, ChatStatus.ERROR]
        if join_pending:
            direct.append(ChatStatus.PENDING)
        busy = [s for s in ChatStatus if s not in direct]
        for _ in range(3):
            async with self._engine.begin() as conn:
                # Guarded UPDATE … RETURNING: locks and settles the row in one statement
                # (inserting the message does not change the chat row).
                row = (
                    await conn.execute(
                        chats.update()
                        .where(
                            chats.c.id == chat_id,
                            chats.c.status.in_([s.value for s in direct]),
                        )
                        .values(
                            status=ChatStatus.PENDING.value,
                            last_error=None,
                            last_error_code=None,
                            updated_at=self._clock.now(),
                        )
                        .returning(*chats.c)
                    )
                ).first()
                if row is not None:
                    message = await self._insert_message(conn, chat_id, "user", parts, "both", None)
                    return _chat(row), message, None
                locked = await self._lock_if(conn, chat_id, busy)
                if locked is not None:  # queueing does not change the chat row either
                    queued = await self._enqueue(conn, chat_id, parts, max_queued=max_queued)
                    return locked, None, queued
                await self._get(conn, chat_id)  # NotFound if it does not exist
            # the status moved between the two guards (a turn just ended); look again
        raise Conflict("the chat changed state repeatedly; try again")

    async def queued_counts(self, chat_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Number of queued messages per chat (chats without any are left out)."""
        if not chat_ids:
            return {}
        query = (
            sa.select(chat_queued_messages.c.chat_id, sa.func.count())
            .where(chat_queued_messages.c.chat_id.in_(chat_ids))
            .group_by(chat_queued_messages.c.chat_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r[0]: int(r[1]) for r in rows}

    async def messages(
        self, chat_id: uuid.UUID, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        query = (
            sa.select(chat_messages)
            .where(chat_messages.c.chat_id == chat_id, chat_messages.c.seq > after_seq)
            .order_by(chat_messages.c.seq)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_message(r) for r in rows]

    # --- queue ----------------------------------------------------------------------------------

    async def enqueue(
        self, chat_id: uuid.UUID, parts: list[dict[str, Any]], *, max_queued: int
    ) -> QueuedMessage:
        async with self._engine.begin() as conn:
            return await self._enqueue(conn, chat_id, parts, max_queued=max_queued)

    async def _enqueue(
        self,
        conn: AsyncConnection,
        chat_id: uuid.UUID,
        parts: list[dict[str, Any]],
        *,
        max_queued: int,
    ) -> QueuedMessage:
        now = self._clock.now()
        count = await conn.scalar(
            sa.select(sa.func.count()).where(chat_queued_messages.c.chat_id == chat_id)
        )
        if (count or 0) >= max_queued:
            raise QueueFull(
                f"at most {max_queued} messages can be queued for a chat", max_queued=max_queued
            )
        qid = new_id()
        await conn.execute(
            chat_queued_messages.insert().values(
                id=qid, chat_id=chat_id, parts=parts, created_at=now
            )
        )
        return QueuedMessage(id=qid, chat_id=chat_id, parts=parts, created_at=now)

    async def queued(self, chat_id: uuid.UUID) -> list[QueuedMessage]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(chat_queued_messages)
                    .where(chat_queued_messages.c.chat_id == chat_id)
                    .order_by(chat_queued_messages.c.created_at, chat_queued_messages.c.id)
                )
            ).all()
        return [
            QueuedMessage(
                id=r.id,
                chat_id=r.chat_id,
                parts=list(r.parts),
                created_at=as_utc(r.created_at),  # type: ignore[arg-type]
            )
            for r in rows
        ]

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
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_chat(r) for r in rows]
