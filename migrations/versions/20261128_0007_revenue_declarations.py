"""revenue declarations: what an app earned in a period, as its owner declares it, and the investors'
pool collected from the owner and distributed

- `revenue_declarations`: one live declaration per (app, period, currency) (`live` true, NULL once a
  correction replaced it; unique with the three).
- `distributions.source`: what a distribution shares out, `revenue_payments` (the period's revenue
  payments, every distribution so far) or a declaration's id. One distribution per (app, period,
  currency, source): still one per period for revenue payments, and one per paid declaration.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 08:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revenue_declarations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("gross_revenue", sa.BigInteger(), nullable=False),
        sa.Column("investor_shares", sa.BigInteger(), nullable=False),
        sa.Column("total_shares", sa.BigInteger(), nullable=False),
        sa.Column("pool", sa.BigInteger(), nullable=False),
        sa.Column("holdings_as_of", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("payment_reference", sa.String(length=64), nullable=True),
        sa.Column("payment_url", sa.String(length=2048), nullable=True),
        sa.Column("replaces", sa.String(length=40), nullable=True),
        sa.Column("replaced_by", sa.String(length=40), nullable=True),
        sa.Column("distribution_id", sa.String(length=40), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("paid_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("live", name=op.f("ck_revenue_declarations_live_true_or_null")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revenue_declarations")),
        sa.UniqueConstraint("app_id", "period", "currency", "live",
                            name=op.f("uq_revenue_declarations_app_id_period_currency_live")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_revenue_declarations_payment_id")),
    )
    with op.batch_alter_table("revenue_declarations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revenue_declarations_app_id"), ["app_id"], unique=False)

    with op.batch_alter_table("distributions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=40), server_default="revenue_payments", nullable=False))
        batch_op.drop_constraint(batch_op.f("uq_distributions_app_id_period_currency"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_distributions_app_id_period_currency_source"), ["app_id", "period", "currency", "source"])


def downgrade() -> None:
    # Declarations' distributions would collide with their period's distribution of revenue payments
    # under the old constraint: the downgrade refuses while there are any (settle them by hand first).
    distributions = sa.table("distributions", sa.column("source", sa.String))
    declared = op.get_bind().scalar(
        sa.select(sa.func.count()).select_from(distributions).where(distributions.c.source != "revenue_payments"))
    if declared:
        raise RuntimeError(f"{declared} distributions of revenue declarations: cannot go back to one per period")
    with op.batch_alter_table("distributions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_distributions_app_id_period_currency_source"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_distributions_app_id_period_currency"), ["app_id", "period", "currency"])
        batch_op.drop_column("source")

    with op.batch_alter_table("revenue_declarations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revenue_declarations_app_id"))
    op.drop_table("revenue_declarations")
