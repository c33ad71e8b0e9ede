"""distribution allocations keyed by (distribution_id, user_id)

An allocation already had one row per distribution and holder (a unique constraint); that pair becomes its
primary key and the surrogate `id` goes: one index fewer to write for each of a distribution's rows. Nothing
referred to the ids.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 09:30:00.000000
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
    with op.batch_alter_table("distribution_allocations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_distribution_allocations_distribution_id_user_id", type_="unique")
        batch_op.drop_constraint("pk_distribution_allocations", type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_distribution_allocations", ["distribution_id", "user_id"])


def downgrade() -> None:
    with op.batch_alter_table("distribution_allocations", schema=None) as batch_op:
        batch_op.drop_constraint("pk_distribution_allocations", type_="primary")
        batch_op.create_unique_constraint("uq_distribution_allocations_distribution_id_user_id",
                                          ["distribution_id", "user_id"])
    if op.get_bind().dialect.name == "postgresql":
        # A serial column numbers the rows already there as it is added.
        op.execute("ALTER TABLE distribution_allocations ADD COLUMN id BIGSERIAL")
        op.create_primary_key("pk_distribution_allocations", "distribution_allocations", ["id"])
    else:
        with op.batch_alter_table("distribution_allocations", schema=None) as batch_op:
            batch_op.add_column(sa.Column("id", sa.Integer(), nullable=True))
        op.execute("UPDATE distribution_allocations SET id = rowid")
        with op.batch_alter_table("distribution_allocations", schema=None) as batch_op:
            batch_op.alter_column("id", existing_type=sa.Integer(), nullable=False)
            batch_op.create_primary_key("pk_distribution_allocations", ["id"])
