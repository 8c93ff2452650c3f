"""Initial schema: users, tokens, templates, workspaces, builds, jobs, agents, logs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Constraint names follow the naming convention of ``tether.db.tables.metadata`` so that later
(batch) migrations can refer to them on both dialects.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
LOG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("deprecated", sa.Boolean, nullable=False),
        sa.Column("active_version_id", sa.Uuid, nullable=True),
        sa.Column("created_by", sa.Uuid, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_templates_created_by_users"),
        sa.UniqueConstraint("name", name="uq_templates_name"),
    )
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("template_id", sa.Uuid, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_by", sa.Uuid, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_template_versions"),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name="fk_template_versions_template_id_templates",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name="fk_template_versions_created_by_users"
        ),
        sa.UniqueConstraint("template_id", "version", name="uq_template_versions_template_version"),
    )
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        sa.Column("template_id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("ttl_ms", sa.BigInteger, nullable=True),
        sa.Column("last_used_at", TS, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workspaces"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_workspaces_owner_id_users"),
        sa.ForeignKeyConstraint(
            ["template_id"], ["templates.id"], name="fk_workspaces_template_id_templates"
        ),
    )
    # names are unique per owner among live workspaces
    op.create_index(
        "uq_workspaces_owner_name_live",
        "workspaces",
        ["owner_id", "name"],
        unique=True,
        sqlite_where=sa.text("deleted = 0"),
        postgresql_where=sa.text("deleted = false"),
    )
    op.create_table(
        "provisioner_jobs",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("canceled_at", TS, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("worker_id", sa.Uuid, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provisioner_jobs"),
    )
    op.create_table(
        "provisioner_job_logs",
        sa.Column("id", LOG_ID, nullable=False, autoincrement=True),
        sa.Column("job_id", sa.Uuid, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provisioner_job_logs"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["provisioner_jobs.id"],
            name="fk_provisioner_job_logs_job_id_provisioner_jobs",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_provisioner_job_logs_job_id", "provisioner_job_logs", ["job_id", "id"])
    op.create_table(
        "workspace_builds",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("workspace_id", sa.Uuid, nullable=False),
        sa.Column("build_number", sa.Integer, nullable=False),
        sa.Column("transition", sa.String(16), nullable=False),
        sa.Column("template_version_id", sa.Uuid, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("job_id", sa.Uuid, nullable=False),
        sa.Column("initiator_id", sa.Uuid, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workspace_builds"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workspace_builds_workspace_id_workspaces"
        ),
        sa.ForeignKeyConstraint(
            ["template_version_id"],
            ["template_versions.id"],
            name="fk_workspace_builds_template_version_id_template_versions",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["provisioner_jobs.id"], name="fk_workspace_builds_job_id_provisioner_jobs"
        ),
        sa.ForeignKeyConstraint(
            ["initiator_id"], ["users.id"], name="fk_workspace_builds_initiator_id_users"
        ),
        sa.UniqueConstraint("workspace_id", "build_number", name="uq_workspace_builds_number"),
    )
    op.create_table(
        "workspace_agents",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("build_id", sa.Uuid, nullable=False),
        sa.Column("workspace_id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("display_order", sa.Integer, nullable=False),
        sa.Column("chat", sa.Boolean, nullable=False),
        sa.Column("parent_id", sa.Uuid, nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("dial_address", sa.String(256), nullable=True),
        sa.Column("dial_secret", sa.String(128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("first_connected_at", TS, nullable=True),
        sa.Column("last_connected_at", TS, nullable=True),
        sa.Column("disconnected_at", TS, nullable=True),
        sa.Column("connection_timeout_s", sa.Integer, nullable=False),
        sa.Column("lifecycle_state", sa.String(32), nullable=False),
        sa.Column("lifecycle_changed_at", TS, nullable=False),
        sa.Column("os", sa.String(32), nullable=True),
        sa.Column("directory", sa.Text, nullable=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workspace_agents"),
        sa.ForeignKeyConstraint(
            ["build_id"],
            ["workspace_builds.id"],
            name="fk_workspace_agents_build_id_workspace_builds",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workspace_agents_workspace_id_workspaces"
        ),
        sa.UniqueConstraint("token_hash", name="uq_workspace_agents_token_hash"),
    )
    op.create_index("ix_workspace_agents_build_id", "workspace_agents", ["build_id"])
    op.create_table(
        "workspace_agent_logs",
        sa.Column("id", LOG_ID, nullable=False, autoincrement=True),
        sa.Column("agent_id", sa.Uuid, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workspace_agent_logs"),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["workspace_agents.id"],
            name="fk_workspace_agent_logs_agent_id_workspace_agents",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_workspace_agent_logs_agent_id", "workspace_agent_logs", ["agent_id", "id"])


def downgrade() -> None:
    for table in (
        "workspace_agent_logs",
        "workspace_agents",
        "workspace_builds",
        "provisioner_job_logs",
        "provisioner_jobs",
        "workspaces",
        "template_versions",
        "templates",
        "api_tokens",
        "users",
    ):
        op.drop_table(table)
