"""Admin-managed models (the operator's models live in the server config, not here).

Chats now name a configured model: a spec stored by an older version (``openai:…``,
``python:…``, ``…@http://…``) is cleared, so such a chat uses the default model instead of
failing (and a spec from a request is never resolved).

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "llm_models",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_by", sa.Uuid, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_models"),
        sa.UniqueConstraint("name", name="uq_llm_models_name"),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name="fk_llm_models_created_by_users", ondelete="SET NULL"
        ),
    )

    chats = sa.table("chats", sa.column("model", sa.String))
    op.execute(
        chats.update()
        .where(sa.or_(chats.c.model.like("%:%"), chats.c.model.like("%@%")))
        .values(model=None)
    )


def downgrade() -> None:
    op.drop_table("llm_models")
