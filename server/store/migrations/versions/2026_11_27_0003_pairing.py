"""pairing: queue time and party joins on witness sessions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 21:43:36.808055
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("witness_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("investor_joined_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("witness_joined_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("witness_sessions", schema=None) as batch_op:
        batch_op.drop_column("witness_joined_at")
        batch_op.drop_column("investor_joined_at")
        batch_op.drop_column("queued_at")
