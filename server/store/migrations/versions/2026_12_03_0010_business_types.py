"""account services (A20–A22): a business type on every application and session, the
holder's accounts a service is for, and what the account system did with each

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        # Every application before this one was an opening.
        batch_op.add_column(
            sa.Column("business_type", sa.String(length=32), server_default="open", nullable=False)
        )
        batch_op.add_column(
            sa.Column("method", sa.String(length=16), server_default="witnessed", nullable=False)
        )
        # The holder's request, encrypted (account numbers are personal data): the
        # accounts named, what the account system said of them, the details asked for.
        batch_op.add_column(sa.Column("service_enc", sa.LargeBinary(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_applications_business_type"), ["business_type"], unique=False
        )
    with op.batch_alter_table("witness_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("business_type", sa.String(length=32), server_default="open", nullable=False)
        )
    op.create_table(
        "service_outcomes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("application_id", sa.String(length=32), nullable=False),
        sa.Column("business_type", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        # The account number masked; the full one is in details_enc.
        sa.Column("account_masked", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("reference", sa.String(length=100), server_default="", nullable=False),
        sa.Column("details_enc", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_service_outcomes_application_id_applications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_outcomes")),
    )
    with op.batch_alter_table("service_outcomes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_outcomes_application_id"), ["application_id"], unique=False
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        # A22, A26: an account cancelled here records when and by which method.
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closing_method", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("closing_method")
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("service_outcomes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_outcomes_application_id"))
    op.drop_table("service_outcomes")
    with op.batch_alter_table("witness_sessions", schema=None) as batch_op:
        batch_op.drop_column("business_type")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_applications_business_type"))
        batch_op.drop_column("service_enc")
        batch_op.drop_column("method")
        batch_op.drop_column("business_type")
