"""audit trail, automatic distributions, overdue milestones

- `audit_log`: who changed a money rule or moved money, when, in which request and what changed;
  append-only: on PostgreSQL a trigger refuses every UPDATE and DELETE of its rows.
- `automatic_distributions`: the worker's queue of (app, period, currency) whose revenue was paid in
  while automatic distributions are on; unique per triple.
- `milestones.overdue_at`: when the worker saw a pending milestone past its due date (set once).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 08:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here as written (the migration does not change with the application).
REFUSE_CHANGES_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'audit_log is append-only: ' || TG_OP || ' refused';
END;
$$ LANGUAGE plpgsql
"""
REFUSE_CHANGES_TRIGGER = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()
"""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("actor_roles", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_actor_id_id", ["actor_id", "id"], unique=False)
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_resource", ["resource_type", "resource_id", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(REFUSE_CHANGES_FUNCTION)
        op.execute(REFUSE_CHANGES_TRIGGER)

    op.create_table(
        "automatic_distributions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("distribution_id", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automatic_distributions")),
        sa.UniqueConstraint(
            "app_id", "period", "currency", name=op.f("uq_automatic_distributions_app_id_period_currency")
        ),
    )
    with op.batch_alter_table("automatic_distributions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_automatic_distributions_status_available_at", ["status", "available_at"], unique=False
        )

    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overdue_at", app.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_milestones_status_due_date", ["status", "due_date"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.drop_index("ix_milestones_status_due_date")
        batch_op.drop_column("overdue_at")
    with op.batch_alter_table("automatic_distributions", schema=None) as batch_op:
        batch_op.drop_index("ix_automatic_distributions_status_available_at")
    op.drop_table("automatic_distributions")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_resource")
        batch_op.drop_index("ix_audit_log_at")
        batch_op.drop_index("ix_audit_log_actor_id_id")
    op.drop_table("audit_log")  # its trigger goes with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_refuse_change()")
