"""The ledger's one writer and the integrity checks that audit it, on both engines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database, sqlstate_of
from app.core.errors import InsufficientFunds
from app.ledger import accounts
from app.ledger.integrity import CHECKS, run_checks
from app.ledger.service import (
    BULK_ACCOUNTS,
    AlreadyPosted,
    Entry,
    Leg,
    UnbalancedEntry,
    balance,
    move,
    post,
    post_entries,
)
from app.models import EscrowTransaction, JournalEntry, LedgerAccount, Posting
from app.models.base import new_id
from tests.conftest import requires_postgres
from tests.helpers import blocked_on_a_lock

# A guarded account with no domain rows behind it (escrow would also be checked against deposits).
GATEWAY, HELD = accounts.gateway("NGN"), accounts.platform_fees("NGN")


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()


async def balances(db: Database, *names: str) -> list[int]:
    async with db.unit_of_work() as session:
        return [await balance(session, name) for name in names]


async def failed_checks(db: Database) -> dict[str, dict[str, object]]:
    async with db.unit_of_work() as session:
        return {check.name: check.details for check in await run_checks(session) if not check.ok}


async def test_a_movement_updates_both_balances_and_appends_two_postings(db: Database) -> None:
    async with db.unit_of_work() as session:
        entry_id = await post(session, kind="test", legs=move(GATEWAY, HELD, 12_345))
    assert await balances(db, GATEWAY, HELD) == [-12_345, 12_345]
    async with db.unit_of_work() as session:
        legs = (await session.execute(select(Posting.amount).where(Posting.entry_id == entry_id))).scalars().all()
    assert sorted(legs) == [-12_345, 12_345]
    assert await failed_checks(db) == {}


@pytest.mark.parametrize("legs", [
    [Leg(GATEWAY, -100), Leg(HELD, 99)],
    [Leg(GATEWAY, -100), Leg(HELD, 100), Leg(accounts.payable("u1", "NGN"), 0)],
    [Leg(GATEWAY, -100), Leg(HELD, 100), Leg(HELD, 0)],
    [Leg(GATEWAY, 0)],
], ids=["not summing to zero", "a zero leg", "a zero leg on an account with another leg", "one leg"])
async def test_an_unbalanced_entry_is_refused_before_anything_is_written(db: Database, legs: list[Leg]) -> None:
    with pytest.raises(UnbalancedEntry):
        async with db.unit_of_work() as session:
            await post(session, kind="test", legs=legs)
    async with db.unit_of_work() as session:
        assert await session.scalar(select(func.count()).select_from(JournalEntry)) == 0


async def test_a_guarded_account_never_goes_below_zero(db: Database) -> None:
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, HELD, 500))
    with pytest.raises(InsufficientFunds) as refused:
        async with db.unit_of_work() as session:
            await post(session, kind="test", legs=move(HELD, accounts.payable("u1", "NGN"), 501))
    assert refused.value.details["account"] == HELD
    assert await balances(db, HELD, accounts.payable("u1", "NGN")) == [500, 0]
    assert await failed_checks(db) == {}


async def test_the_same_idempotency_key_posts_once(db: Database) -> None:
    for _ in range(2):
        async with db.unit_of_work() as session:
            first = await post(session, kind="test", legs=move(GATEWAY, HELD, 700), idempotency_key="fact-1")
    assert first is None
    assert await balances(db, HELD) == [700]


async def test_an_entry_with_many_accounts_posts_every_leg_exactly(db: Database) -> None:
    holders = BULK_ACCOUNTS * 3
    revenue = accounts.revenue("app-1", "NGN")
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, revenue, 1_000_000))
    parts = [i + 1 for i in range(holders)]
    legs = [Leg(revenue, -sum(parts))] + [Leg(accounts.payable(f"u{i:03d}", "NGN"), p) for i, p in enumerate(parts)]
    async with db.unit_of_work() as session:
        assert await post(session, kind="test", legs=legs, idempotency_key="many") is not None
    async with db.unit_of_work() as session:
        assert await post(session, kind="test", legs=legs, idempotency_key="many") is None
    first, last = accounts.payable("u000", "NGN"), accounts.payable(f"u{holders - 1:03d}", "NGN")
    assert await balances(db, revenue, first, last) == [1_000_000 - sum(parts), 1, holders]
    assert await failed_checks(db) == {}

    too_much = [Leg(revenue, -2_000_000)] + [Leg(accounts.payable(f"u{i:03d}", "NGN"), 2_000_000 // holders)
                                            for i in range(holders)]
    too_much[1] = Leg(too_much[1].account, too_much[1].amount + 2_000_000 % holders)
    with pytest.raises(InsufficientFunds):
        async with db.unit_of_work() as session:
            await post(session, kind="test", legs=too_much)
    assert await balances(db, revenue) == [1_000_000 - sum(parts)]


async def test_two_entries_with_many_accounts_post_in_one_transaction_with_repeated_accounts(db: Database) -> None:
    holders = BULK_ACCOUNTS + 10
    revenue = accounts.revenue("app-1", "NGN")
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, revenue, 1_000_000))
    # the revenue account appears in two legs of each entry, and holder 0 in two legs of the second
    first = [Leg(revenue, -holders), Leg(revenue, -holders)] + [
        Leg(accounts.payable(f"u{i:03d}", "NGN"), 2) for i in range(holders)]
    second = [Leg(revenue, -1), Leg(revenue, -(holders - 1)), Leg(accounts.payable("u000", "NGN"), 5),
              Leg(accounts.payable("u000", "NGN"), -4)] + [
        Leg(accounts.payable(f"u{i:03d}", "NGN"), 1) for i in range(1, holders)]
    async with db.unit_of_work() as session:
        first_id = await post(session, kind="test", legs=first, idempotency_key="bulk-1")
        second_id = await post(session, kind="test", legs=second, idempotency_key="bulk-2")
    assert await balances(db, revenue, accounts.payable("u000", "NGN"), accounts.payable("u001", "NGN")) == [
        1_000_000 - 3 * holders, 3, 3]
    async with db.unit_of_work() as session:
        for entry_id, legs in ((first_id, first), (second_id, second)):
            written = (await session.scalars(select(Posting.amount).where(Posting.entry_id == entry_id))).all()
            assert sorted(written) == sorted(leg.amount for leg in legs)
    assert await failed_checks(db) == {}


@requires_postgres
async def test_entries_with_many_accounts_at_once_over_the_same_holders_all_land(db: Database) -> None:
    """Two distributions (many accounts each) and small movements out of the same holders' accounts, all at
    once: each waits for the accounts' locks in name order, none deadlocks, and every amount lands once."""
    holders = BULK_ACCOUNTS + 20
    payables = [accounts.payable(f"u{i:03d}", "NGN") for i in range(holders)]
    revenues = [accounts.revenue(f"app-{n}", "NGN") for n in range(2)]
    async with db.unit_of_work() as session:
        for revenue in revenues:
            await post(session, kind="test", legs=move(GATEWAY, revenue, 10 * holders))
        await post(session, kind="test", legs=[Leg(GATEWAY, -holders)] + [Leg(p, 1) for p in payables])

    async def distribute(revenue: str) -> None:
        async def work(session: AsyncSession) -> None:
            await post(session, kind="test", legs=[Leg(revenue, -3 * holders)] + [Leg(p, 3) for p in payables])
        await db.run(work)

    async def pay_out(payable: str) -> None:
        async def work(session: AsyncSession) -> None:
            await post(session, kind="test", legs=move(payable, GATEWAY, 1))
        await db.run(work)

    await asyncio.gather(*(distribute(revenue) for revenue in revenues),
                         *(pay_out(payable) for payable in payables[::7]))
    expected = [3 * 2 + (0 if i % 7 == 0 else 1) for i in range(holders)]
    assert await balances(db, *payables) == expected
    assert await balances(db, *revenues) == [7 * holders, 7 * holders]
    assert await failed_checks(db) == {}


@contextlib.contextmanager
def failed_sqlstates(db: Database) -> Iterator[list[str | None]]:
    """The PostgreSQL error codes of the statements that failed meanwhile, caught or not."""
    codes: list[str | None] = []

    def record(context: ExceptionContext) -> None:
        if isinstance(context.sqlalchemy_exception, DBAPIError):
            codes.append(sqlstate_of(context.sqlalchemy_exception))

    event.listen(db.engine.sync_engine, "handle_error", record)
    try:
        yield codes
    finally:
        event.remove(db.engine.sync_engine, "handle_error", record)


async def distribution_to_new_holders(db: Database) -> tuple[str, list[str], list[Leg]]:
    """A funded revenue account, the first holder's payable account with 1 in it, and the legs of an entry
    paying 3 to each of BULK_ACCOUNTS + 10 holders, the others without an account yet."""
    revenue = accounts.revenue("app-1", "NGN")
    payables = [accounts.payable(f"u{i:03d}", "NGN") for i in range(BULK_ACCOUNTS + 10)]
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, revenue, 1_000_000))
        await post(session, kind="test", legs=move(GATEWAY, payables[0], 1))
    return revenue, payables, [Leg(revenue, -3 * len(payables))] + [Leg(p, 3) for p in payables]


async def post_alone(db: Database, legs: list[Leg]) -> None:
    """Posts in a unit of work of its own, without `Database.run`'s retries: what is survived is the
    ledger's own doing."""
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=legs, idempotency_key="bulk")


@requires_postgres
async def test_an_entry_with_many_accounts_lands_when_another_transaction_creates_one_of_them_meanwhile(
    db: Database,
) -> None:
    """The entry waits for the account another transaction is creating, then credits it: nothing fails."""
    revenue, payables, legs = await distribution_to_new_holders(db)
    with failed_sqlstates(db) as codes:
        async with db.unit_of_work() as other:
            await post(other, kind="test", legs=move(GATEWAY, payables[5], 7))  # creates the account
            bulk = asyncio.create_task(post_alone(db, legs))
            await blocked_on_a_lock(db.engine)  # the entry waits for that account's key
        await bulk
    assert codes == []
    assert await balances(db, payables[0], payables[5], payables[-1], revenue) == [
        4, 10, 3, 1_000_000 - 3 * len(payables)]
    assert await failed_checks(db) == {}


@requires_postgres
async def test_an_entry_with_many_accounts_survives_a_deadlock_over_an_account_it_creates(db: Database) -> None:
    """The entry has locked an existing account and waits for one another transaction has just created;
    that transaction then waits for the existing account. PostgreSQL breaks the deadlock by failing the
    entry's statement (it waited first); the entry lets go of its locks, is posted again behind the other
    transaction, and both land without retrying the unit of work."""
    revenue, payables, legs = await distribution_to_new_holders(db)
    with failed_sqlstates(db) as codes:
        async with db.unit_of_work() as other:
            await post(other, kind="test", legs=move(GATEWAY, payables[5], 7))
            bulk = asyncio.create_task(post_alone(db, legs))
            await blocked_on_a_lock(db.engine)
            await post(other, kind="test", legs=move(payables[0], GATEWAY, 1))  # locked by the entry
        await bulk
    assert codes == ["40P01"]
    assert await balances(db, payables[0], payables[5], payables[-1], revenue) == [
        3, 10, 3, 1_000_000 - 3 * len(payables)]
    assert await failed_checks(db) == {}


async def test_integrity_finds_a_tampered_balance_and_an_orphan_posting(db: Database) -> None:
    async with db.unit_of_work() as session:
        entry_id = await post(session, kind="test", legs=move(GATEWAY, HELD, 900))
    async with db.unit_of_work() as session:
        await session.execute(update(LedgerAccount).where(LedgerAccount.name == HELD).values(balance=901))
        session.add_all([Posting(entry_id=entry_id, account_id=999_999, amount=5, currency="NGN"),
                         Posting(entry_id=999_999, account_id=1, amount=-5, currency="NGN")])
    failed = await failed_checks(db)
    assert HELD in {m["account"] for m in failed["cached_balances_match_postings"]["mismatched"]}
    orphans = failed["postings_reference_entries_and_accounts"]["orphans"]
    assert {(o["entry_id"], o["account_id"]) for o in orphans} == {(entry_id, 999_999), (999_999, 1)}


async def test_several_entries_post_together_each_with_its_own_postings(db: Database) -> None:
    payable = accounts.payable("u1", "NGN")
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, HELD, 1_000))
    entries = [Entry("test", move(HELD, payable, 300), "batch-1"), Entry("test", move(HELD, payable, 200), "batch-2"),
               Entry("test", move(payable, HELD, 50), "batch-3")]
    async with db.unit_of_work() as session:
        ids = await post_entries(session, entries)
    assert len(set(ids)) == 3
    assert await balances(db, HELD, payable) == [550, 450]
    async with db.unit_of_work() as session:
        for entry_id, amount in zip(ids, (300, 200, -50), strict=True):
            legs = (await session.scalars(select(Posting.amount).where(Posting.entry_id == entry_id))).all()
            assert sorted(legs) == sorted([-amount, amount])
    assert await failed_checks(db) == {}


async def test_a_batch_holding_an_entry_posted_before_is_refused_whole(db: Database) -> None:
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, HELD, 1_000), idempotency_key="seen")
    with pytest.raises(AlreadyPosted):
        async with db.unit_of_work() as session:
            await post_entries(session, [Entry("test", move(GATEWAY, HELD, 5), "fresh"),
                                         Entry("test", move(GATEWAY, HELD, 7), "seen")])
    assert await balances(db, HELD) == [1_000]
    assert await failed_checks(db) == {}


async def test_a_batch_that_would_overdraw_a_guarded_account_writes_nothing(db: Database) -> None:
    payable = accounts.payable("u1", "NGN")
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, HELD, 100))
    with pytest.raises(InsufficientFunds):
        async with db.unit_of_work() as session:
            await post_entries(session, [Entry("test", move(HELD, payable, 60), "over-1"),
                                         Entry("test", move(HELD, payable, 41), "over-2")])
    assert await balances(db, HELD, payable) == [100, 0]
    assert await failed_checks(db) == {}


async def test_every_integrity_check_reads_one_snapshot(db: Database) -> None:
    """Each check is one statement. Under READ COMMITTED (PostgreSQL's default) every statement reads a
    snapshot of its own, so a check made of two could see a refund committed between them and report
    books that were never wrong (the Bank test caught escrow-versus-deposits doing that mid-run)."""
    statements: list[str] = []

    def record(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.unit_of_work() as session:
            await session.execute(select(1))  # the transaction has begun: what follows is the checks' own
            for check in CHECKS:
                statements.clear()
                await check(session)
                assert len(statements) == 1, (check.__name__, statements)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def test_escrow_that_disagrees_with_its_deposits_is_caught_either_way(db: Database) -> None:
    """Escrow money with no deposit behind it, and a deposit whose money never reached escrow."""
    with_money, without = accounts.escrow("app-1", "NGN"), accounts.escrow("app-2", "NGN")
    async with db.unit_of_work() as session:
        await post(session, kind="test", legs=move(GATEWAY, with_money, 5_000))
        session.add(EscrowTransaction(id=new_id("esc"), type="deposit", app_id="app-2", investor_id="investor-1",
                                      amount=7_000, currency="NGN", status="held", released=0, refunded=0, frozen=0))
    failed = await failed_checks(db)
    assert failed["escrow_equals_deposits_minus_releases_and_refunds"]["mismatched"] == [
        {"account": with_money, "ledger": 5_000, "deposits": 0},
        {"account": without, "ledger": 0, "deposits": 7_000},
    ]
