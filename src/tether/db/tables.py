"""Table definitions (SQLAlchemy Core). The schema itself only changes through Alembic
migrations in ``db/migrations/versions``; this module mirrors the head revision and is what
the stores query against. All ids are UUIDs; all times are UTC."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = sa.DateTime(timezone=True)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),  # admin | member
    sa.Column("created_at", TS, nullable=False),
    sa.Column("disabled_at", TS, nullable=True),  # set: every token of the user gets 401
    sa.Column("deleted_at", TS, nullable=True),  # set: gone from lists, tokens removed
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("last_used_at", TS, nullable=True),  # coarse: see Settings.token_last_used_*
)

# One row (id 1): a one-way fingerprint of the server key the database is used with, so a
# replica started with another key refuses to run (its dials would all fail). See
# tether.serverkey.
server_key_fingerprints = sa.Table(
    "server_key_fingerprints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(128), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("deprecated", sa.Boolean, nullable=False),
    sa.Column("active_version_id", sa.Uuid, nullable=True),
    sa.Column("created_by", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

template_versions = sa.Table(
    "template_versions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "template_id", sa.Uuid, sa.ForeignKey("templates.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),  # validated TemplateSpec as JSON
    sa.Column("source", sa.Text, nullable=False),  # the YAML as pushed
    sa.Column("created_by", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("template_id", "version", name="uq_template_versions_template_version"),
)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("owner_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("template_id", sa.Uuid, sa.ForeignKey("templates.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("ttl_ms", sa.BigInteger, nullable=True),
    sa.Column("last_used_at", TS, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # names are unique per owner among live workspaces
    sa.Index(
        "uq_workspaces_owner_name_live",
        "owner_id",
        "name",
        unique=True,
        sqlite_where=sa.text("deleted = 0"),
        postgresql_where=sa.text("deleted = false"),
    ),
)

provisioner_jobs = sa.Table(
    "provisioner_jobs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),  # workspace_build
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS, nullable=True),
    sa.Column("completed_at", TS, nullable=True),
    sa.Column("canceled_at", TS, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker_id", sa.Uuid, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)

provisioner_job_logs = sa.Table(
    "provisioner_job_logs",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "job_id", sa.Uuid, sa.ForeignKey("provisioner_jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Index("ix_provisioner_job_logs_job_id", "job_id", "id"),
)

workspace_builds = sa.Table(
    "workspace_builds",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("workspace_id", sa.Uuid, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("build_number", sa.Integer, nullable=False),
    sa.Column("transition", sa.String(16), nullable=False),  # start | stop | delete
    sa.Column(
        "template_version_id", sa.Uuid, sa.ForeignKey("template_versions.id"), nullable=False
    ),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("job_id", sa.Uuid, sa.ForeignKey("provisioner_jobs.id"), nullable=False),
    sa.Column("initiator_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),  # initiator | autostop | chat | ...
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("workspace_id", "build_number", name="uq_workspace_builds_number"),
)

workspace_agents = sa.Table(
    "workspace_agents",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "build_id",
        sa.Uuid,
        sa.ForeignKey("workspace_builds.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("workspace_id", sa.Uuid, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("display_order", sa.Integer, nullable=False),
    sa.Column("chat", sa.Boolean, nullable=False),  # the template marks it as the chat agent
    sa.Column("parent_id", sa.Uuid, nullable=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("dial_address", sa.String(256), nullable=True),
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
    sa.Index("ix_workspace_agents_build_id", "build_id"),
)

workspace_agent_logs = sa.Table(
    "workspace_agent_logs",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "agent_id",
        sa.Uuid,
        sa.ForeignKey("workspace_agents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),  # startup_script | agent
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Index("ix_workspace_agent_logs_agent_id", "agent_id", "id"),
)

# --- chats (migration 0002) ---------------------------------------------------------------

chats = sa.Table(
    "chats",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("owner_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("title", sa.String(256), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("worker_id", sa.Uuid, nullable=True),
    sa.Column("started_at", TS, nullable=True),
    sa.Column("heartbeat_at", TS, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_error_code", sa.String(64), nullable=True),
    sa.Column("parent_chat_id", sa.Uuid, sa.ForeignKey("chats.id"), nullable=True),
    sa.Column("root_chat_id", sa.Uuid, nullable=True),
    sa.Column("workspace_id", sa.Uuid, sa.ForeignKey("workspaces.id"), nullable=True),
    sa.Column(
        "build_id",
        sa.Uuid,
        sa.ForeignKey("workspace_builds.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column(
        "agent_id",
        sa.Uuid,
        sa.ForeignKey("workspace_agents.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("archived", sa.Boolean, nullable=False),
    sa.Column("interrupt_requested", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # migration 0011: plan mode and the UI copy of the last injected instruction/skill parts
    sa.Column("plan_mode", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_injected_context", sa.JSON, nullable=True),
    # first_message | auto | user (migration 0012): only first_message gets an automatic title
    sa.Column("title_source", sa.String(16), nullable=False, server_default="auto"),
    sa.Index("ix_chats_status_updated", "status", "updated_at"),
    sa.Index("ix_chats_owner", "owner_id", "updated_at"),
    sa.Index("ix_chats_parent", "parent_chat_id"),
)

chat_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("chat_id", sa.Uuid, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("parts", sa.JSON, nullable=False),
    sa.Column("visibility", sa.String(8), nullable=False),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("superseded_at", TS, nullable=True),  # edited away (migration 0012)
    sa.UniqueConstraint("chat_id", "seq", name="uq_chat_messages_chat_seq"),
)

chat_queued_messages = sa.Table(
    "chat_queued_messages",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("chat_id", sa.Uuid, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("parts", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_chat_queued_messages_chat", "chat_id", "created_at"),
)

# Admin-managed models (tether.llm.config.ModelConfig as JSON; never a key, only its source).
llm_models = sa.Table(
    "llm_models",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_by", sa.Uuid, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# Admin chat settings (migration 0011): template allowlist, system prompt, user prompt.
chat_config = sa.Table(
    "chat_config",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# A chat's labels (migration 0011): the chat list filters on them.
chat_labels = sa.Table(
    "chat_labels",
    metadata,
    sa.Column("chat_id", sa.Uuid, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Index("ix_chat_labels_key", "key", "value"),
)

# Compaction records (chatd/compaction.py): the model sees ``summary`` instead of the
# messages up to ``through_seq``; those messages stay. ``number`` counts a chat's records,
# unique per chat: of two concurrent compactions of one state, one insert fails.
chat_compactions = sa.Table(
    "chat_compactions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("chat_id", sa.Uuid, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("through_seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("carried", sa.JSON, nullable=False),
    sa.Column("tokens_before", sa.Integer, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("invalidated_at", TS, nullable=True),  # an edit before its cut (migration 0012)
    sa.UniqueConstraint("chat_id", "number", name="uq_chat_compactions_chat_number"),
)

# What each model request cost, as the provider reported it (chatd/context.py).
chat_usage = sa.Table(
    "chat_usage",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("chat_id", sa.Uuid, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("estimated_tokens", sa.Integer, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("owner_id", sa.Uuid, nullable=True),  # the chat's owner (per-user limits)
    sa.Column("turn_seq", sa.Integer, nullable=True),  # seq of the turn's user message
    sa.Index("ix_chat_usage_chat", "chat_id", "created_at"),
    sa.Index("ix_chat_usage_owner", "owner_id", "created_at"),
)

# A user's own, lower compaction threshold (chatd/context.py): min(model's, user's) applies.
user_context_settings = sa.Table(
    "user_context_settings",
    metadata,
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("compaction_threshold", sa.Float, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)
