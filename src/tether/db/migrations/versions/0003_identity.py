"""Identity: disabled/deleted users, token last-used time, no stored dial secrets, the
server key's fingerprint.

Dial secrets are derived from the server key (:mod:`tether.serverkey`), so the plain-text
``workspace_agents.dial_secret`` column goes away; agents of earlier builds must be restarted.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", TS, nullable=True))
        batch.add_column(sa.Column("deleted_at", TS, nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("last_used_at", TS, nullable=True))
    with op.batch_alter_table("workspace_agents") as batch:
        batch.drop_column("dial_secret")
    op.create_table(
        "server_key_fingerprints",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_server_key_fingerprints"),
    )


def downgrade() -> None:
    op.drop_table("server_key_fingerprints")
    with op.batch_alter_table("workspace_agents") as batch:
        batch.add_column(sa.Column("dial_secret", sa.String(128), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("disabled_at")
