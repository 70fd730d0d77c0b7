"""the investor's pre-call network check, and where each recording is damaged by loss

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "network_checks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("application_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=16), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=True),
        sa.Column("rtt_ms", sa.Integer(), nullable=True),
        sa.Column("upstream_kbps", sa.Integer(), nullable=True),
        sa.Column("camera_ok", sa.Boolean(), nullable=False),
        sa.Column("microphone_ok", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_network_checks_application_id_applications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_checks")),
    )
    with op.batch_alter_table("network_checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_network_checks_application_id"), ["application_id"], unique=False
        )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        # Stretches with missing or undecodable media: [{"start_ms", "length_ms", "kind",
        # "reason"}] on the recording's own clock; NULL = not measured (older recordings).
        batch_op.add_column(sa.Column("damage", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("damaged_ms", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("frames_lost", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_column("frames_lost")
        batch_op.drop_column("damaged_ms")
        batch_op.drop_column("damage")
    with op.batch_alter_table("network_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_network_checks_application_id"))
    op.drop_table("network_checks")
