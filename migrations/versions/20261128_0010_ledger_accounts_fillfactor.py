"""ledger accounts leave a third of each page free (PostgreSQL)

`ledger_accounts` gets `fillfactor = 70`: a balance update then fits on the row's own page and touches no
index. It applies to pages written from now on; existing pages fill up to it as rows move. SQLite has no
such setting.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ledger_accounts SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ledger_accounts RESET (fillfactor)")
