"""postings without foreign keys

Per-row key checks doubled the cost of writing a large journal entry (a
distribution to 100,000 holders). `ledger.service.post()` is the only writer of
postings and takes both ids from rows it has just written or locked; the
integrity check proves every posting's entry and account exist.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:57:38.100021
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_postings_entry_id_journal_entries"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_postings_account_id_ledger_accounts"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_postings_account_id_ledger_accounts"), "ledger_accounts", ["account_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_postings_entry_id_journal_entries"), "journal_entries", ["entry_id"], ["id"]
        )
