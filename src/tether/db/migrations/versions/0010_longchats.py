"""Long chats: compaction records, per-request usage, a user's compaction threshold.

Revision ID: 0010
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chat_compactions",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("chat_id", sa.Uuid, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("through_seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("carried", sa.JSON, nullable=False),
        sa.Column("tokens_before", sa.Integer, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_compactions"),
        sa.UniqueConstraint("chat_id", "number", name="uq_chat_compactions_chat_number"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_chat_compactions_chat_id_chats", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "chat_usage",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("chat_id", sa.Uuid, nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("estimated_tokens", sa.Integer, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_usage"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_chat_usage_chat_id_chats", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_chat_usage_chat", "chat_usage", ["chat_id", "created_at"])
    op.create_table(
        "user_context_settings",
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("compaction_threshold", sa.Float, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_context_settings"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_user_context_settings_user_id_users",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("user_context_settings")
    op.drop_index("ix_chat_usage_chat", table_name="chat_usage")
    op.drop_table("chat_usage")
    op.drop_table("chat_compactions")
