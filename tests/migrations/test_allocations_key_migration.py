"""Migration 0011 on data: allocations keep their rows when (distribution_id, user_id) becomes their key, that
pair stays unique, and going back numbers them again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from tests.migrations.test_migrations import _alembic, _drop_own_postgres_database, _on_sync, db_url

# The fixtures: SQLite, and PostgreSQL with TEST_DATABASE_URL, whose database goes with the module.
__all__ = ["_drop_own_postgres_database", "db_url"]

ROWS = [("dst_1", "u-1", 10, 600, "po_1"), ("dst_1", "u-2", 5, 300, None), ("dst_2", "u-1", 10, 700, "po_2")]
INSERT = sa.text("INSERT INTO distribution_allocations (distribution_id, user_id, shares, amount, payout_id) "
                 "VALUES (:distribution_id, :user_id, :shares, :amount, :payout_id)")


def _insert(conn: Connection, rows: list[tuple[object, ...]]) -> None:
    conn.execute(INSERT, [dict(zip(("distribution_id", "user_id", "shares", "amount", "payout_id"), row,
                                   strict=True)) for row in rows])
    conn.commit()


def _rows(conn: Connection, *columns: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(sa.text(
        f"SELECT {', '.join(columns)} FROM distribution_allocations ORDER BY distribution_id, user_id")).all()]


def _insert_twice(conn: Connection) -> None:
    with pytest.raises(IntegrityError):
        _insert(conn, [("dst_1", "u-1", 1, 1, None)])
    conn.rollback()


async def test_allocations_are_kept_and_keyed_by_distribution_and_holder(db_url: str) -> None:
    await _alembic(command.upgrade, db_url, "0010")
    await _on_sync(db_url, lambda conn: _insert(conn, ROWS))
    await _alembic(command.upgrade, db_url, "0011")

    columns = ("distribution_id", "user_id", "shares", "amount", "payout_id")
    assert await _on_sync(db_url, lambda conn: _rows(conn, *columns)) == ROWS
    await _on_sync(db_url, _insert_twice)

    await _alembic(command.downgrade, db_url, "0010")
    back = await _on_sync(db_url, lambda conn: _rows(conn, "id", *columns))
    assert [row[1:] for row in back] == ROWS
    assert len({row[0] for row in back}) == 3 and all(row[0] is not None for row in back)
    await _on_sync(db_url, _insert_twice)
