"""media: recording node, session-clock start and cue count; stills

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 00:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("node_id", sa.String(length=100), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("start_ms", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("cues", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "stills",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("participant", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("offset_ms", sa.BigInteger(), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["witness_sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stills_session_id", "stills", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_stills_session_id", table_name="stills")
    op.drop_table("stills")
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_column("cues")
        batch_op.drop_column("start_ms")
        batch_op.drop_column("node_id")
