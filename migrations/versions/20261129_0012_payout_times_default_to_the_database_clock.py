"""payouts' times default to the database's clock

`payouts.created_at`, `updated_at` and `available_at` get a server default (the time at the transaction's
start), so a distribution can COPY its payouts without them. The application still sets them on every other
insert.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 14:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMES = ("available_at", "created_at", "updated_at")


def upgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        for column in TIMES:
            batch_op.alter_column(column, existing_type=UTCDateTime(), existing_nullable=False,
                                  server_default=sa.func.now())


def downgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        for column in TIMES:
            batch_op.alter_column(column, existing_type=UTCDateTime(), existing_nullable=False, server_default=None)
