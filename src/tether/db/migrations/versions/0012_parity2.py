"""Message edit, usage and limits, automatic titles (issue #14).

* ``chat_messages.superseded_at``: set on an edited user message and every later message
  (soft delete: the rows stay, the history the model gets and ``GET …/messages`` skip them);
* ``chat_compactions.invalidated_at``: a compaction whose cut lies at or after an edited
  message no longer applies;
* ``chat_usage.owner_id`` + ``turn_seq``: whose tokens (the per-user limit sums them with
  one indexed aggregate) and which turn (the ``seq`` of the user message that started it);
* ``chats.title_source``: ``first_message`` (eligible for an automatic title), ``auto`` or
  ``user`` (never overwritten).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch:
        batch.add_column(sa.Column("superseded_at", TS, nullable=True))
    with op.batch_alter_table("chat_compactions") as batch:
        batch.add_column(sa.Column("invalidated_at", TS, nullable=True))
    with op.batch_alter_table("chat_usage") as batch:
        batch.add_column(sa.Column("owner_id", sa.Uuid, nullable=True))
        batch.add_column(sa.Column("turn_seq", sa.Integer, nullable=True))
    op.execute(
        "UPDATE chat_usage SET owner_id = "
        "(SELECT chats.owner_id FROM chats WHERE chats.id = chat_usage.chat_id)"
    )
    op.create_index("ix_chat_usage_owner", "chat_usage", ["owner_id", "created_at"])
    with op.batch_alter_table("chats") as batch:
        # existing chats count as titled: no automatic title replaces theirs
        batch.add_column(
            sa.Column("title_source", sa.String(16), nullable=False, server_default="auto")
        )


def downgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("title_source")
    op.drop_index("ix_chat_usage_owner", table_name="chat_usage")
    with op.batch_alter_table("chat_usage") as batch:
        batch.drop_column("turn_seq")
        batch.drop_column("owner_id")
    with op.batch_alter_table("chat_compactions") as batch:
        batch.drop_column("invalidated_at")
    with op.batch_alter_table("chat_messages") as batch:
        batch.drop_column("superseded_at")
