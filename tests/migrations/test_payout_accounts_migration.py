"""Migration 0009 on data: the one payout account a person had becomes the default of its currency, with the
recipient type the service gave that currency; going back keeps one account per person."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from tests.migrations.test_migrations import _alembic, _drop_own_postgres_database, _on_sync, db_url

# The fixtures: SQLite, and PostgreSQL with TEST_DATABASE_URL, whose database goes with the module.
__all__ = ["_drop_own_postgres_database", "db_url"]

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _insert(conn: Connection, rows: list[dict[str, object]]) -> None:
    conn.execute(sa.text(
        "INSERT INTO payout_accounts (id, user_id, currency, bank_code, account_number_encrypted, account_last4, "
        "account_name, recipient_code, created_at, updated_at) VALUES (:id, :user_id, :currency, '057', 'x', "
        "'6789', 'A B', :recipient_code, :now, :now)"), [{**row, "now": NOW} for row in rows])
    conn.commit()


def _rows(conn: Connection, *columns: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(sa.text(
        f"SELECT {', '.join(columns)} FROM payout_accounts ORDER BY id")).all()]


async def test_existing_accounts_become_their_currencys_default(db_url: str) -> None:
    await _alembic(command.upgrade, db_url, "0008")
    await _on_sync(db_url, lambda conn: _insert(conn, [
        {"id": "pa_1", "user_id": "u-1", "currency": "NGN", "recipient_code": "RCP_1"},
        {"id": "pa_2", "user_id": "u-2", "currency": "GHS", "recipient_code": "RCP_2"},
        {"id": "pa_3", "user_id": "u-3", "currency": "KES", "recipient_code": "RCP_3"},
        {"id": "pa_4", "user_id": "u-4", "currency": "ZAR", "recipient_code": "RCP_4"},
    ]))
    await _alembic(command.upgrade, db_url, "0009")

    rows = await _on_sync(db_url, lambda conn: _rows(conn, "id", "type", "is_default"))
    assert [(i, t, bool(d)) for i, t, d in rows] == [
        ("pa_1", "nuban", True), ("pa_2", "ghipss", True), ("pa_3", "mobile_money", True), ("pa_4", "basa", True)]

    # a second account of u-1, then back to one account per person: the default stays
    def second(conn: Connection) -> None:
        conn.execute(sa.text(
            "INSERT INTO payout_accounts (id, user_id, currency, type, bank_code, account_number_encrypted, "
            "account_last4, account_name, recipient_code, is_default, created_at, updated_at) VALUES ('pa_0', "
            "'u-1', 'NGN', 'nuban', '058', 'x', '4321', 'A B', 'RCP_0', false, :now, :now)"), {"now": NOW})
        conn.commit()

    await _on_sync(db_url, second)
    await _alembic(command.downgrade, db_url, "0008")
    assert await _on_sync(db_url, lambda conn: _rows(conn, "id", "user_id")) == [
        ("pa_1", "u-1"), ("pa_2", "u-2"), ("pa_3", "u-3"), ("pa_4", "u-4")]
