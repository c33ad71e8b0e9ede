"""payout accounts per currency and kind: a person may hold several, one default per currency

- `payout_accounts.user_id` is no longer unique (an index stays); `(user_id, recipient_code)` is: the
  same account registered again is the same row.
- `payout_accounts.type`: the Paystack recipient type. Existing rows get the type the service used for
  their currency until now (NGN `nuban`, GHS `ghipss`, ZAR `basa`, KES `mobile_money`, else `nuban`).
- `payout_accounts.is_default`: existing rows (one per person) become the default of their currency. A
  partial unique index (`WHERE is_default`) holds one default per person and currency.
- `account_type`, `document_type`, `document_number_encrypted`: South Africa's account validation.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 08:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here as the service applied it before this revision, so the migration never changes with the app.
_TYPE_OF_CURRENCY = {"NGN": "nuban", "GHS": "ghipss", "ZAR": "basa", "KES": "mobile_money"}


def upgrade() -> None:
    with op.batch_alter_table("payout_accounts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_payout_accounts_user_id"), type_="unique")
        batch_op.add_column(sa.Column("type", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("is_default", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("account_type", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("document_type", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("document_number_encrypted", sa.Text(), nullable=True))

    accounts = sa.table("payout_accounts", sa.column("currency", sa.String), sa.column("type", sa.String),
                        sa.column("is_default", sa.Boolean))
    type_of = sa.case(*((accounts.c.currency == code, kind) for code, kind in _TYPE_OF_CURRENCY.items()),
                      else_="nuban")
    # Until now a person held one account: it is the default of its currency.
    op.execute(accounts.update().values(type=type_of, is_default=sa.true()))

    with op.batch_alter_table("payout_accounts", schema=None) as batch_op:
        batch_op.alter_column("type", existing_type=sa.String(length=30), nullable=False)
        batch_op.alter_column("is_default", existing_type=sa.Boolean(), nullable=False)
        batch_op.create_index(batch_op.f("ix_payout_accounts_user_id"), ["user_id"], unique=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_payout_accounts_user_id_recipient_code"), ["user_id", "recipient_code"])
        batch_op.create_index(
            "uq_payout_accounts_default", ["user_id", "currency"], unique=True,
            postgresql_where=sa.text("is_default"), sqlite_where=sa.text("is_default"))


def downgrade() -> None:
    # One account per person again: the oldest default is kept, the others are deleted.
    connection = op.get_bind()
    accounts = sa.table("payout_accounts", sa.column("id", sa.String), sa.column("user_id", sa.String),
                        sa.column("is_default", sa.Boolean), sa.column("created_at"))
    rows = connection.execute(
        sa.select(accounts.c.id, accounts.c.user_id, accounts.c.is_default)
        .order_by(accounts.c.user_id, accounts.c.is_default.desc(), accounts.c.created_at, accounts.c.id)
    ).all()
    kept: set[str] = set()
    doomed = []
    for account_id, user_id, _ in rows:
        if user_id in kept:
            doomed.append(account_id)
        kept.add(user_id)
    if doomed:
        connection.execute(accounts.delete().where(accounts.c.id.in_(doomed)))

    with op.batch_alter_table("payout_accounts", schema=None) as batch_op:
        batch_op.drop_index("uq_payout_accounts_default", postgresql_where=sa.text("is_default"),
                            sqlite_where=sa.text("is_default"))
        batch_op.drop_constraint(batch_op.f("uq_payout_accounts_user_id_recipient_code"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_payout_accounts_user_id"))
        batch_op.drop_column("document_number_encrypted")
        batch_op.drop_column("document_type")
        batch_op.drop_column("account_type")
        batch_op.drop_column("is_default")
        batch_op.drop_column("type")
        batch_op.create_unique_constraint(batch_op.f("uq_payout_accounts_user_id"), ["user_id"])
