"""one-way video (A18): a session's mode, sessions without a witness on the call, and
each attempt's instructions, measurements and outcome

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("witness_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), server_default="two_way", nullable=False)
        )
        # A18: no witness on a one-way call; the reviewing witness is set later.
        batch_op.alter_column("witness_id", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        # A18.6: a witness reviews a one-way recording before the reviewer does.
        batch_op.add_column(
            sa.Column("stage", sa.String(length=16), server_default="reviewer", nullable=False)
        )
    op.create_table(
        "oneway_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("application_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("sequence", sa.JSON(), nullable=False),
        sa.Column("liveness", sa.JSON(), nullable=True),
        sa.Column("face", sa.JSON(), nullable=True),
        sa.Column("statement", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_oneway_attempts_application_id_applications"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["witness_sessions.id"],
            name=op.f("fk_oneway_attempts_session_id_witness_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oneway_attempts")),
        sa.UniqueConstraint("session_id", name=op.f("uq_oneway_attempts_session_id")),
    )
    with op.batch_alter_table("oneway_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oneway_attempts_application_id"), ["application_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("oneway_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oneway_attempts_application_id"))
    op.drop_table("oneway_attempts")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_column("stage")
    with op.batch_alter_table("witness_sessions", schema=None) as batch_op:
        batch_op.alter_column("witness_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("mode")
