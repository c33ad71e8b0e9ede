"""The database helpers for large reads and writes, on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database, bulk_insert, fetch_plain_rows, insert_rows, tune_for_bulk
from app.models import AuditEntry, EscrowTransaction, Holding
from tests.conftest import TEST_DATABASE_URL


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()


HOLDING_COLUMNS = ("app_id", "user_id", "shares", "reserved_shares", "acquired_at", "updated_at")


async def seed_holdings(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.unit_of_work() as session:
        await bulk_insert(session, Holding.__table__, HOLDING_COLUMNS,
                          [("app-1", f"u{i}", i, 0, now, now) for i in range(5)]
                          + [("app-2", "u9", 7, 0, now, now)])


def holdings_made_as_they_go(count: int, fail_after: int | None = None) -> Iterator[tuple[object, ...]]:
    now = datetime.now(UTC)
    for i in range(count):
        if i == fail_after:
            raise RuntimeError("the rows' builder failed")
        yield ("app-g", f"u{i:05d}", i + 1, 0, now, now)


async def test_rows_from_a_generator_are_all_inserted(db: Database) -> None:
    async with db.unit_of_work() as session:
        await bulk_insert(session, Holding.__table__, HOLDING_COLUMNS, holdings_made_as_they_go(20_000))
    async with db.unit_of_work() as session:
        shares = (await session.scalars(select(Holding.shares).where(Holding.app_id == "app-g"))).all()
    assert sorted(shares) == list(range(1, 20_001))


async def test_a_generator_failing_half_way_writes_nothing_and_leaves_the_database_usable(db: Database) -> None:
    # Well past the first of the driver's COPY buffers, so rows were already sent when the builder failed.
    with pytest.raises(RuntimeError, match="builder failed"):
        async with db.unit_of_work() as session:
            await bulk_insert(session, Holding.__table__, HOLDING_COLUMNS,
                              holdings_made_as_they_go(20_000, fail_after=15_000))
    await seed_holdings(db)
    async with db.unit_of_work() as session:
        held = (await session.scalars(select(Holding.app_id).distinct().order_by(Holding.app_id))).all()
    assert held == ["app-1", "app-2"]


async def test_plain_rows_are_the_rows_sqlalchemy_reads(db: Database) -> None:
    await seed_holdings(db)
    query = (select(Holding.user_id, Holding.shares)
             .where(Holding.app_id == "app-1", Holding.shares > 1).order_by(Holding.user_id))
    async with db.unit_of_work() as session:
        plain = await fetch_plain_rows(session, query)
        expected = (await session.execute(query)).all()
    assert [tuple(row) for row in plain] == [tuple(row) for row in expected] == [("u2", 2), ("u3", 3), ("u4", 4)]


async def test_plain_rows_of_a_query_with_an_in_list(db: Database) -> None:
    await seed_holdings(db)
    query = select(Holding.user_id).where(Holding.user_id.in_(["u1", "u9", "nobody"])).order_by(Holding.user_id)
    async with db.unit_of_work() as session:
        assert [row[0] for row in await fetch_plain_rows(session, query)] == ["u1", "u9"]


async def test_rows_inserted_together_take_the_defaults_of_the_columns_they_leave_out(db: Database) -> None:
    rows = [{"id": f"esc_{i}", "type": "deposit", "app_id": "app-1", "investor_id": "u1", "amount": 100 * i,
             "currency": "NGN", "status": "held"} for i in (1, 2)]
    before = datetime.now(UTC)
    async with db.unit_of_work() as session:
        await insert_rows(session, EscrowTransaction.__table__, rows)
    async with db.unit_of_work() as session:
        found = (await session.scalars(select(EscrowTransaction).order_by(EscrowTransaction.id))).all()
    assert [(r.id, r.amount, r.payment_gateway, r.shares, r.released, r.refunded, r.frozen) for r in found] == [
        ("esc_1", 100, "PAYSTACK", 0, 0, 0, 0), ("esc_2", 200, "PAYSTACK", 0, 0, 0, 0)]
    assert all(r.created_at >= before and r.updated_at >= before for r in found)


async def test_rows_inserted_together_are_converted_as_their_column_types_convert_them(db: Database) -> None:
    lagos = timezone(timedelta(hours=1))
    rows = [{"id": "aud_1", "at": datetime(2026, 11, 29, 13, 0, tzinfo=lagos), "actor_id": "admin-1",
             "actor_roles": ["admin"], "request_id": None, "action": "escrow.refunded",
             "resource_type": "escrow_transaction", "resource_id": "esc_1", "changes": {"amount": 100}}]
    async with db.unit_of_work() as session:
        await insert_rows(session, AuditEntry.__table__, rows)
    async with db.unit_of_work() as session:
        [found] = (await session.scalars(select(AuditEntry))).all()
    assert (found.at, found.actor_roles, found.changes) == (
        datetime(2026, 11, 29, 12, 0, tzinfo=UTC), ["admin"], {"amount": 100})
    with pytest.raises((ValueError, StatementError), match="naive"):  # refused before it is sent
        async with db.unit_of_work() as session:
            await insert_rows(session, AuditEntry.__table__, [{**rows[0], "id": "aud_2", "at": datetime(2026, 1, 1)}])


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL settings: needs PostgreSQL (set TEST_DATABASE_URL)")
async def test_bulk_settings_last_until_the_end_of_their_transaction(db: Database) -> None:
    async with db.unit_of_work() as session:
        default_work_mem = await session.scalar(text("SHOW work_mem"))
        await tune_for_bulk(session)
        assert (await session.scalar(text("SHOW jit")), await session.scalar(text("SHOW work_mem"))) == (
            "off", "64MB")
    async with db.unit_of_work() as session:
        assert await session.scalar(text("SHOW work_mem")) == default_work_mem


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL pool: needs PostgreSQL (set TEST_DATABASE_URL)")
async def test_transactions_one_after_another_reuse_the_connection_returned_last(db: Database) -> None:
    """A group commit's batches run one after another: on the connection whose statements are prepared."""
    async def backend(session: AsyncSession) -> int:
        return int(await session.scalar(text("SELECT pg_backend_pid()")))

    async def one_transaction() -> int:
        async with db.unit_of_work() as session:
            return await backend(session)

    async with db.unit_of_work() as first, db.unit_of_work() as second, db.unit_of_work() as third:
        opened = [await backend(session) for session in (first, second, third)]
    assert len(set(opened)) == 3  # the pool holds three connections; the first was returned last

    assert [await one_transaction() for _ in range(4)] == [opened[0]] * 4
