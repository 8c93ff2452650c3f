"""The statements built once with bound parameters (db/prebuilt.py, issue #12) compile to
the same SQL, on SQLite and on PostgreSQL, as the statements they replaced — built per
call with the values inline, as the stores did before. A prebuilt statement that drifted
(a condition dropped, a parameter name taken for a column to set, a RETURNING column
lost) shows up here as a text difference.

Parameter names never reach the SQL text on either driver (``?`` and ``$n``), except in
the placeholder of an expanding ``IN`` list, which is normalised."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from tether.db import (
    agents,
    chatclaims,
    chatqueue,
    chatrows,
    chats,
    chatsummary,
    jobs,
    users,
    workspaces,
)
from tether.db.chatsummary import summary_columns
from tether.db.sqliteloop import SQLiteLoopDialect
from tether.db.tables import (
    api_tokens,
    chat_compactions,
    chat_labels,
    chat_messages,
    chat_queued_messages,
    chat_usage,
    provisioner_jobs,
    workspace_agents,
)
from tether.db.tables import chats as chats_t
from tether.db.tables import users as users_t
from tether.db.tables import workspaces as workspaces_t
from tether.domain.chat import ChatStatus

DIALECTS = {"sqlite": SQLiteLoopDialect(), "postgresql": asyncpg_dialect()}
ID = uuid.UUID(int=1)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACTIVE = [ChatStatus.RUNNING.value, ChatStatus.INTERRUPTING.value]
PENDING = chats_t.c.status == ChatStatus.PENDING.value


def sql(stmt: sa.ClauseElement, dialect: sa.Dialect) -> str:
    text = str(stmt.compile(dialect=dialect))
    return re.sub(r"__\[POSTCOMPILE_\w+\]", "__[POSTCOMPILE]", text)


# --- the statements as the stores built them per call (values inline) -------------------


def claim(postgres: bool) -> sa.Update:
    oldest = sa.select(chats_t.c.id).where(PENDING).order_by(chats_t.c.updated_at).limit(4)
    claimed_id: sa.ColumnClause[Any] = sa.literal_column("chats.id")
    last_seq = (
        sa.select(sa.func.coalesce(sa.func.max(chat_messages.c.seq), 0))
        .where(chat_messages.c.chat_id == claimed_id)
        .scalar_subquery()
        .label("last_seq")
    )
    compaction = (
        sa.select(sa.func.coalesce(sa.func.max(chat_compactions.c.number), 0))
        .where(
            chat_compactions.c.chat_id == claimed_id,
            chat_compactions.c.invalidated_at.is_(None),
        )
        .scalar_subquery()
        .label("compaction_number")
    )
    if postgres:
        picked = oldest.with_for_update(skip_locked=True).cte("picked")
        stmt = chats_t.update().where(chats_t.c.id == picked.c.id)
    else:
        stmt = chats_t.update().where(chats_t.c.id.in_(oldest.scalar_subquery()))
    return (
        stmt.where(PENDING)
        .values(
            status=ChatStatus.RUNNING.value,
            worker_id=ID,
            started_at=NOW,
            heartbeat_at=NOW,
            interrupt_requested=False,
            updated_at=NOW,
        )
        .returning(*chats_t.c, last_seq, compaction)
    )


def recover(keep: bool) -> sa.Update:
    stale = [chats_t.c.status.in_(ACTIVE), chats_t.c.heartbeat_at < NOW]
    if keep:
        stale.append(chats_t.c.id.not_in([ID]))
    return (
        chats_t.update()
        .where(*stale)
        .values(status=ChatStatus.PENDING.value, worker_id=None, updated_at=NOW)
        .returning(chats_t.c.id)
    )


OURS = [chats_t.c.id == ID, chats_t.c.status.in_(ACTIVE), chats_t.c.worker_id == ID]
SETTLED = {
    "worker_id": None,
    "heartbeat_at": None,
    "interrupt_requested": False,
    "last_error": None,
    "last_error_code": None,
    "updated_at": NOW,
}


def job_claim(postgres: bool) -> sa.Update:
    pending = sa.and_(
        provisioner_jobs.c.started_at.is_(None),
        provisioner_jobs.c.completed_at.is_(None),
        provisioner_jobs.c.canceled_at.is_(None),
        provisioner_jobs.c.error.is_(None),
    )
    oldest = sa.select(provisioner_jobs.c.id).where(pending)
    oldest = oldest.order_by(provisioner_jobs.c.created_at).limit(1)
    if postgres:
        oldest = oldest.with_for_update(skip_locked=True)
    return (
        provisioner_jobs.update()
        .where(provisioner_jobs.c.id == oldest.scalar_subquery(), pending)
        .values(started_at=NOW, worker_id=ID, updated_at=NOW)
        .returning(provisioner_jobs.c.id)
    )


def messages(all_of_them: bool, limited: bool) -> sa.Select[Any]:
    query = (
        sa.select(chat_messages)
        .where(chat_messages.c.chat_id == ID, chat_messages.c.seq > 0)
        .order_by(chat_messages.c.seq)
    )
    if not all_of_them:
        query = query.where(chat_messages.c.superseded_at.is_(None))
    if limited:
        query = query.limit(10)
    return query


def send_settle(direct: tuple[str, ...], owned: bool) -> sa.Update:
    where = [chats_t.c.id == ID, chats_t.c.status.in_(direct)]
    if owned:
        where.append(chats_t.c.owner_id == ID)
    return (
        chats_t.update()
        .where(*where)
        .values(
            status=ChatStatus.PENDING.value, last_error=None, last_error_code=None, updated_at=NOW
        )
        .returning(*chats_t.c, *summary_columns())
    )


def summary_query() -> sa.CompoundSelect:
    ids = [ID]
    no_int, no_text = sa.cast(sa.null(), sa.BigInteger), sa.cast(sa.null(), sa.String)
    queued = (
        sa.select(
            sa.literal_column("'q'").label("kind"),
            chat_queued_messages.c.chat_id.label("chat_id"),
            sa.func.count().label("a"),
            no_int.label("b"),
            no_text.label("key"),
            no_text.label("value"),
        )
        .where(chat_queued_messages.c.chat_id.in_(ids))
        .group_by(chat_queued_messages.c.chat_id)
    )
    labels = sa.select(
        sa.literal_column("'l'"),
        chat_labels.c.chat_id,
        no_int,
        no_int,
        chat_labels.c.key,
        chat_labels.c.value,
    ).where(chat_labels.c.chat_id.in_(ids))
    usage = (
        sa.select(
            sa.literal_column("'u'"),
            chat_usage.c.chat_id,
            sa.func.coalesce(sa.func.sum(chat_usage.c.input_tokens), 0),
            sa.func.coalesce(sa.func.sum(chat_usage.c.output_tokens), 0),
            no_text,
            no_text,
        )
        .where(chat_usage.c.chat_id.in_(ids))
        .group_by(chat_usage.c.chat_id)
    )
    return sa.union_all(queued, labels, usage).order_by(sa.literal_column("key"))


PAIRS: dict[str, tuple[sa.ClauseElement, Callable[[], sa.ClauseElement]]] = {
    "chats: any pending": (
        chatclaims._ANY_PENDING,
        lambda: sa.select(chats_t.c.id).where(PENDING).limit(1),
    ),
    "chats: claim (sqlite)": (chatclaims._CLAIM[False], lambda: claim(False)),
    "chats: claim (postgresql)": (chatclaims._CLAIM[True], lambda: claim(True)),
    "chats: heartbeat": (
        chatclaims._HEARTBEAT,
        lambda: (
            chats_t.update()
            .where(
                chats_t.c.id.in_([ID]),
                chats_t.c.worker_id == ID,
                chats_t.c.status.in_(ACTIVE),
            )
            .values(heartbeat_at=NOW)
            .returning(chats_t.c.id)
        ),
    ),
    "chats: recover stale": (chatclaims._RECOVER[False], lambda: recover(False)),
    "chats: recover stale, keeping some": (chatclaims._RECOVER[True], lambda: recover(True)),
    "chats: release": (
        chatclaims._RELEASE,
        lambda: (
            chats_t.update()
            .where(chats_t.c.worker_id == ID, chats_t.c.status.in_(ACTIVE))
            .values(status=ChatStatus.PENDING.value, worker_id=None, updated_at=NOW)
            .returning(chats_t.c.id)
        ),
    ),
    "chats: finish, nothing queued": (
        chatclaims._SETTLE_IF_UNQUEUED,
        lambda: (
            chats_t.update()
            .where(*OURS, ~sa.exists().where(chat_queued_messages.c.chat_id == ID))
            .values(status=ChatStatus.WAITING.value, **SETTLED)
            .returning(*chats_t.c)
        ),
    ),
    "chats: finish, lock": (
        chatclaims._LOCK_OURS,
        lambda: chats_t.update().where(*OURS).values(status=chats_t.c.status).returning(*chats_t.c),
    ),
    "chats: finish, settle": (
        chatclaims._SETTLE,
        lambda: (
            chats_t.update()
            .where(chats_t.c.id == ID)
            .values(status=ChatStatus.WAITING.value, **SETTLED)
            .returning(*chats_t.c)
        ),
    ),
    "chats: get": (chatrows._GET_CHAT, lambda: sa.select(chats_t).where(chats_t.c.id == ID)),
    "chats: send (idle)": (
        chats._settle(("waiting", "error"), False),
        lambda: send_settle(("waiting", "error"), False),
    ),
    "chats: send (idle or pending, owned)": (
        chats._settle(("waiting", "error", "pending"), True),
        lambda: send_settle(("waiting", "error", "pending"), True),
    ),
    "chats: summaries": (chatsummary._QUERY, summary_query),
    **{
        f"messages: all={a}, limited={lim}": (
            chatrows.MESSAGES[a, lim],
            lambda a=a, lim=lim: messages(a, lim),  # type: ignore[misc]
        )
        for a in (False, True)
        for lim in (False, True)
    },
    "queue: oldest": (
        chatqueue._OLDEST_QUEUED,
        lambda: (
            sa.select(chat_queued_messages)
            .where(chat_queued_messages.c.chat_id == ID)
            .order_by(chat_queued_messages.c.created_at, chat_queued_messages.c.id)
            .limit(1)
        ),
    ),
    "queue: delete": (
        chatqueue._DELETE_QUEUED,
        lambda: chat_queued_messages.delete().where(chat_queued_messages.c.id == ID),
    ),
    "tokens: still valid": (
        users._TOKEN_VALID,
        lambda: (
            sa.select(api_tokens.c.expires_at, users_t.c.disabled_at, users_t.c.deleted_at)
            .join(users_t, api_tokens.c.user_id == users_t.c.id)
            .where(api_tokens.c.id == ID)
        ),
    ),
    "agents: pings": (
        agents._PING_MANY,
        lambda: (
            workspace_agents.update()
            .where(
                workspace_agents.c.id.in_([ID]),
                sa.or_(
                    workspace_agents.c.disconnected_at.is_(None),
                    workspace_agents.c.disconnected_at < NOW,
                ),
            )
            .values(last_connected_at=NOW)
        ),
    ),
    "workspaces: touch": (
        workspaces._TOUCH_MANY,
        lambda: (
            workspaces_t.update()
            .where(workspaces_t.c.id.in_([ID]), workspaces_t.c.deleted.is_(False))
            .values(last_used_at=NOW)
        ),
    ),
    "jobs: any pending": (
        jobs._ANY_PENDING_JOB,
        lambda: (
            sa.select(provisioner_jobs.c.id)
            .where(
                provisioner_jobs.c.started_at.is_(None),
                provisioner_jobs.c.completed_at.is_(None),
                provisioner_jobs.c.canceled_at.is_(None),
                provisioner_jobs.c.error.is_(None),
            )
            .limit(1)
        ),
    ),
    "jobs: claim (sqlite)": (jobs._CLAIM_JOB[False], lambda: job_claim(False)),
    "jobs: claim (postgresql)": (jobs._CLAIM_JOB[True], lambda: job_claim(True)),
}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_prebuilt_statement_compiles_as_the_one_it_replaced(name: str, dialect: str) -> None:
    prebuilt, built_per_call = PAIRS[name]
    d = DIALECTS[dialect]
    assert sql(prebuilt, d) == sql(built_per_call(), d)


def test_the_message_insert_computes_its_seq_and_returns_the_row() -> None:
    """The insert has no per-call twin (it replaced SELECT max + INSERT + SELECT): its
    text is pinned by shape instead."""
    for d in DIALECTS.values():
        text = " ".join(sql(chatrows._INSERT_MESSAGE, d).split())
        assert text.startswith("INSERT INTO chat_messages (id, chat_id, seq, role, parts,")
        assert "(SELECT coalesce(max(chat_messages.seq)," in text
        assert "WHERE chat_messages.chat_id = " in text
        assert text.count("RETURNING") == 1
        assert all(c.name in text.split("RETURNING")[1] for c in chat_messages.c)
