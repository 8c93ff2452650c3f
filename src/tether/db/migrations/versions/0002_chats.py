"""Chats: chats (with the workspace/build/agent binding), messages, queued messages.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.Uuid, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_error_code", sa.String(64), nullable=True),
        sa.Column("parent_chat_id", sa.Uuid, nullable=True),
        sa.Column("root_chat_id", sa.Uuid, nullable=True),
        sa.Column("workspace_id", sa.Uuid, nullable=True),
        sa.Column("build_id", sa.Uuid, nullable=True),
        sa.Column("agent_id", sa.Uuid, nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("interrupt_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chats"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_chats_owner_id_users"),
        sa.ForeignKeyConstraint(
            ["parent_chat_id"], ["chats.id"], name="fk_chats_parent_chat_id_chats"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_chats_workspace_id_workspaces"
        ),
        sa.ForeignKeyConstraint(
            ["build_id"],
            ["workspace_builds.id"],
            name="fk_chats_build_id_workspace_builds",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["workspace_agents.id"],
            name="fk_chats_agent_id_workspace_agents",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_chats_status_updated", "chats", ["status", "updated_at"])
    op.create_index("ix_chats_owner", "chats", ["owner_id", "updated_at"])
    op.create_index("ix_chats_parent", "chats", ["parent_chat_id"])
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("chat_id", sa.Uuid, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("parts", sa.JSON, nullable=False),
        sa.Column("visibility", sa.String(8), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_messages"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_chat_messages_chat_id_chats", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("chat_id", "seq", name="uq_chat_messages_chat_seq"),
    )
    op.create_table(
        "chat_queued_messages",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("chat_id", sa.Uuid, nullable=False),
        sa.Column("parts", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_queued_messages"),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["chats.id"],
            name="fk_chat_queued_messages_chat_id_chats",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_chat_queued_messages_chat", "chat_queued_messages", ["chat_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("chat_queued_messages")
    op.drop_table("chat_messages")
    op.drop_table("chats")
