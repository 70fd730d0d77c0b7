"""review playback coverage and opened documents

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 01:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review_playback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.String(length=32), nullable=False),
        sa.Column("intervals", sa.JSON(), nullable=False),
        sa.Column("counted_ms", sa.BigInteger(), nullable=False),
        sa.Column("first_report_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["recording_id"], ["recordings.id"]),
        sa.ForeignKeyConstraint(["reviewer_id"], ["staff.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reviewer_id", "recording_id"),
    )
    op.create_index(
        "ix_review_playback_recording_id", "review_playback", ["recording_id"], unique=False
    )
    op.create_table(
        "review_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reviewer_id"], ["staff.id"]),
        sa.ForeignKeyConstraint(["session_id"], ["witness_sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reviewer_id", "session_id", "item"),
    )
    op.create_index("ix_review_views_session_id", "review_views", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_review_views_session_id", table_name="review_views")
    op.drop_table("review_views")
    op.drop_index("ix_review_playback_recording_id", table_name="review_playback")
    op.drop_table("review_playback")
