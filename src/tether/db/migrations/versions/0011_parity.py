"""Plan mode, skills and the chat settings (issue #14).

* ``chats.plan_mode``: the chat's turns run read-only (docs/behaviour.md §5.7);
* ``chats.last_injected_context``: stripped copies of the instruction and skill parts last
  persisted for the chat (for UIs); NULL when nothing was found (PL-12, PL-13);
* ``chat_config``: admin chat settings (template allowlist, system and user prompt), one JSON
  value per key;
* ``chat_labels``: a chat's labels (key → value), filtered on by the chat list.

Revision ID: 0011
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.add_column(
            sa.Column("plan_mode", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("last_injected_context", sa.JSON, nullable=True))
    op.create_table(
        "chat_config",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_chat_config"),
    )
    op.create_table(
        "chat_labels",
        sa.Column("chat_id", sa.Uuid, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "key", name="pk_chat_labels"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_chat_labels_chat_id_chats", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_chat_labels_key", "chat_labels", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_chat_labels_key", table_name="chat_labels")
    op.drop_table("chat_labels")
    op.drop_table("chat_config")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("last_injected_context")
        batch.drop_column("plan_mode")
