"""Chat labels (``chat_labels``): a few ``key → value`` pairs per chat that users set and
the chat list filters on (docs/behaviour.md §2.5). Keys are lower-case identifiers, values
short strings; a write replaces the chat's whole set."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.db.engine import reading
from tether.db.tables import chat_labels
from tether.errors import InvalidInput

LABELS_MAX = 32
KEY_MAX = 64
VALUE_MAX = 256
_KEY = re.compile(r"\A[a-z0-9][a-z0-9._/-]{0,63}\Z")


def check_labels(labels: Mapping[str, str], field: str = "labels") -> dict[str, str]:
    """``labels`` if valid, else InvalidInput naming the offending key."""
    if len(labels) > LABELS_MAX:
        raise InvalidInput(f"at most {LABELS_MAX} labels", field=field)
    for key, value in labels.items():
        if not _KEY.match(key):
            raise InvalidInput(
                f"label key {key[:KEY_MAX]!r}: lower-case letters, digits and . _ / - "
                f"(at most {KEY_MAX}, starting with a letter or digit)",
                field=f"{field}.{key[:KEY_MAX]}",
            )
        if not isinstance(value, str) or len(value) > VALUE_MAX:
            raise InvalidInput(
                f"label {key}: the value must be a string of at most {VALUE_MAX} characters",
                field=f"{field}.{key}",
            )
    return dict(labels)


class ChatLabelStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def set(self, chat_id: uuid.UUID, labels: Mapping[str, str]) -> dict[str, str]:
        """Replace the chat's labels (one transaction)."""
        labels = check_labels(labels)
        async with self._engine.begin() as conn:
            await conn.execute(chat_labels.delete().where(chat_labels.c.chat_id == chat_id))
            if labels:
                await conn.execute(
                    chat_labels.insert(),
                    [{"chat_id": chat_id, "key": k, "value": v} for k, v in labels.items()],
                )
        return labels

    async def of(self, chat_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, str]]:
        """The labels of each chat (chats without any are left out), in one query."""
        if not chat_ids:
            return {}
        query = sa.select(chat_labels).where(chat_labels.c.chat_id.in_(chat_ids))
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query.order_by(chat_labels.c.key))).all()
        out: dict[uuid.UUID, dict[str, str]] = {}
        for row in rows:
            out.setdefault(row.chat_id, {})[row.key] = row.value
        return out


def label_filter(chat_id_column: sa.ColumnElement[uuid.UUID], key: str, value: str) -> sa.Exists:
    """``EXISTS`` a label ``key = value`` on the chat (for the chat list's WHERE)."""
    return sa.exists().where(
        chat_labels.c.chat_id == chat_id_column,
        chat_labels.c.key == key,
        chat_labels.c.value == value,
    )
