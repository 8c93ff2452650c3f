"""What the API shows of a chat besides its row — queue length, labels, token totals — for
many chats in one statement (issue #12: a send answered with three queries for these).

One ``UNION ALL`` of three small grouped selects, each tagged with its kind, so the same
SQL runs on SQLite and PostgreSQL (no JSON aggregation, whose functions differ).

A send answers with one chat, whose row its guarded ``UPDATE`` already returns: the same
summary rides on that statement as scalar subqueries (:func:`summary_columns`), so the
send needs no summary query (issue #12). The labels there are one JSON object, aggregated
by each dialect's own function (:class:`LabelsJson`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from tether.db.engine import reading
from tether.db.tables import chat_labels, chat_queued_messages, chat_usage
from tether.db.usage import Tokens

_NO_INT = sa.cast(sa.null(), sa.BigInteger)
_NO_TEXT = sa.cast(sa.null(), sa.String)


@dataclass
class ChatSummary:
    queued: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    usage: Tokens | None = None  # input and output tokens (None: no usage recorded)


def _query() -> sa.CompoundSelect:
    ids: sa.BindParameter[list[uuid.UUID]] = sa.bindparam("chat_ids", expanding=True)
    queued = (
        sa.select(
            sa.literal_column("'q'").label("kind"),
            chat_queued_messages.c.chat_id.label("chat_id"),
            sa.func.count().label("a"),
            _NO_INT.label("b"),
            _NO_TEXT.label("key"),
            _NO_TEXT.label("value"),
        )
        .where(chat_queued_messages.c.chat_id.in_(ids))
        .group_by(chat_queued_messages.c.chat_id)
    )
    labels = sa.select(
        sa.literal_column("'l'"),
        chat_labels.c.chat_id,
        _NO_INT,
        _NO_INT,
        chat_labels.c.key,
        chat_labels.c.value,
    ).where(chat_labels.c.chat_id.in_(ids))
    usage = (
        sa.select(
            sa.literal_column("'u'"),
            chat_usage.c.chat_id,
            sa.func.coalesce(sa.func.sum(chat_usage.c.input_tokens), 0),
            sa.func.coalesce(sa.func.sum(chat_usage.c.output_tokens), 0),
            _NO_TEXT,
            _NO_TEXT,
        )
        .where(chat_usage.c.chat_id.in_(ids))
        .group_by(chat_usage.c.chat_id)
    )
    return sa.union_all(queued, labels, usage).order_by(sa.literal_column("key"))


# Built once: constructing it cost more CPU than running it (the chat ids are bound).
_QUERY = _query()


class LabelsJson(FunctionElement[str]):
    """``key``/``value`` rows aggregated into one JSON object text (``'{}'`` or NULL when
    there are none)."""

    type = sa.String()
    name = "labels_json"
    inherit_cache = True


@compiles(LabelsJson, "sqlite")
def _labels_json_sqlite(element: LabelsJson, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_object({compiler.process(element.clauses, **kw)})"


@compiles(LabelsJson, "postgresql")
def _labels_json_postgresql(element: LabelsJson, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(json_object_agg({compiler.process(element.clauses, **kw)}) AS TEXT)"


def summary_columns() -> list[sa.Label[Any]]:
    """The summary of the chat row an ``UPDATE chats … RETURNING`` returns, as scalar
    subqueries (``summary_queued``, ``summary_labels``, ``summary_input``,
    ``summary_output``); read back with :func:`summary_from_row`."""
    # Qualified by hand: SQLAlchemy renders RETURNING columns unqualified on SQLite, where
    # a bare ``id`` inside a subquery would mean the subquery's own table's.
    chat_id: sa.ColumnClause[Any] = sa.literal_column("chats.id")
    queued = (
        sa.select(sa.func.count())
        .where(chat_queued_messages.c.chat_id == chat_id)
        .scalar_subquery()
        .label("summary_queued")
    )
    labels = (
        sa.select(LabelsJson(chat_labels.c.key, chat_labels.c.value))
        .where(chat_labels.c.chat_id == chat_id)
        .scalar_subquery()
        .label("summary_labels")
    )
    # sum() over no rows is NULL: no usage recorded (the token columns are NOT NULL)
    tokens = [
        sa.select(sa.func.sum(column)).where(chat_usage.c.chat_id == chat_id).scalar_subquery()
        for column in (chat_usage.c.input_tokens, chat_usage.c.output_tokens)
    ]
    return [queued, labels, tokens[0].label("summary_input"), tokens[1].label("summary_output")]


def summary_from_row(row: Any) -> ChatSummary:
    """The summary of a row returned with :func:`summary_columns`."""
    labels = json.loads(row.summary_labels) if row.summary_labels else {}
    usage = None
    if row.summary_input is not None:
        usage = Tokens(int(row.summary_input), int(row.summary_output or 0))
    return ChatSummary(int(row.summary_queued or 0), dict(sorted(labels.items())), usage)


class ChatSummaries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def of(self, chat_ids: list[uuid.UUID]) -> dict[uuid.UUID, ChatSummary]:
        """The summary of each chat (every id has one, empty when there is nothing)."""
        out = {chat_id: ChatSummary() for chat_id in chat_ids}
        if not chat_ids:
            return out
        async with reading(self._engine) as conn:
            rows = (await conn.execute(_QUERY, {"chat_ids": chat_ids})).all()
        for kind, chat_id, a, b, key, value in rows:
            summary = out.get(chat_id)
            if summary is None:
                continue
            if kind == "q":
                summary.queued = int(a)
            elif kind == "l":
                summary.labels[key] = value
            else:
                summary.usage = Tokens(int(a), int(b))
        return out
