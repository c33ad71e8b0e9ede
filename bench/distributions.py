"""A revenue distribution to H holders against PostgreSQL, with asyncpg COPY as the ceiling.

For H = 10,000 and 100,000 holders (half of them with payout accounts) it times
the allocation alone (reading the cap table and the largest-remainder split) and
the whole distribution through the service (allocation, one journal entry with a
leg per holder, allocation rows, payout rows, committed), and prints rows/s. In
the same run, as the ceiling, it reads back the rows the distribution wrote
(allocations, payouts, postings) and writes them again with asyncpg's
`copy_records_to_table` into empty tables shaped like the real ones, indexes
included, and prints the ratio; and again with the ledger accounts the
distribution's entry created or updated (a `payable` account per holder, whose
balance the ledger keeps on the account row), written by COPY as well, since the
distribution writes those rows too. Then it times the next period's distribution
to the same holders, whose accounts the first one created (updated now, not
created), and checks ledger integrity. With `--rounds N` each size runs N times
on fresh databases and the medians follow.

    python bench/distributions.py --holders 10000 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime

import asyncpg
from common import analyze, drop_database, fresh_database, offline_runtime, run_database_name
from sqlalchemy import text

from app.core.money import allocate, percentage_of
from app.core.security import Principal
from app.distributions.schemas import DistributionIn
from app.distributions.service import plan_distribution, write_distribution
from app.ledger import accounts
from app.ledger.integrity import run_checks
from app.ledger.service import move, post
from app.models import Base
from app.runtime import Runtime

REVENUE = 987_654_321_09  # minor units paid in for each period
# The first distribution creates every holder's `payable` account; the second finds them all there.
PERIODS = ("2026-10", "2026-11")


def holding_sizes(holders: int) -> list[int]:
    """Skewed holding sizes, 1 to 1,000 shares."""
    return [1 + (i * 7919) % 1000 for i in range(holders)]


async def seed(rt: Runtime, dsn: str, app_id: str, holders: int) -> None:
    """An app, `holders` holdings with skewed sizes, payout accounts for half, and the period's revenue."""
    now = datetime.now(UTC)
    sizes = holding_sizes(holders)
    conn = await asyncpg.connect(dsn)
    try:
        # shares_issued is what the holdings add up to: the integrity checks compare the two.
        await conn.execute(
            "INSERT INTO apps (id, name, owner_id, currency, share_price, total_shares, shares_issued, approvers, "
            "required_approvals, lock_in_days, platform_fee_hundredths, created_at, updated_at) "
            "VALUES ($1, $1, 'owner', 'NGN', 100, $2, $3, '[]', 1, 0, 250, $4, $4)",
            app_id, holders * 1000, sum(sizes), now,
        )
        await conn.copy_records_to_table(
            "holdings", columns=["app_id", "user_id", "shares", "reserved_shares", "acquired_at", "updated_at"],
            records=[(app_id, f"holder-{i:07d}", size, 0, now, now) for i, size in enumerate(sizes)],
        )
        await conn.copy_records_to_table(
            "payout_accounts",
            columns=["id", "user_id", "currency", "type", "bank_code", "account_number_encrypted", "account_last4",
                     "account_name", "recipient_code", "is_default", "created_at", "updated_at"],
            records=[(f"pa_{app_id}_{i}", f"holder-{i:07d}", "NGN", "nuban", "057", "x", "6789", "H", f"RCP_{i}",
                      True, now, now)
                     for i in range(0, holders, 2)],
        )
    finally:
        await conn.close()
    await analyze(dsn)
    await seed_revenue(rt, app_id, PERIODS[0])


async def seed_revenue(rt: Runtime, app_id: str, period: str) -> None:
    """The app's revenue for `period`, paid in: a revenue payment and its ledger entry."""
    async with rt.db.unit_of_work() as session:
        await session.execute(text(
            "INSERT INTO payments (id, reference, user_id, app_id, payment_type, status, amount, currency, email, "
            "metadata, refunded_amount, period, created_at, updated_at) VALUES (:id, :id, 'owner', :app_id, "
            "'revenue', 'success', :amount, 'NGN', 'o@example.com', '{}', 0, :period, :now, :now)"),
            {"id": f"rev-{app_id}-{period}", "app_id": app_id, "amount": REVENUE, "period": period,
             "now": datetime.now(UTC)})
        await post(session, kind="revenue", legs=move(accounts.gateway("NGN"), accounts.revenue(app_id, "NGN"),
                                                       REVENUE), idempotency_key=f"revenue:rev-{app_id}-{period}")


CEILING_TABLES = {
    "distribution_allocations": ("distribution_id", "user_id", "shares", "amount", "payout_id"),
    "payouts": ("id", "user_id", "amount", "currency", "status", "reference", "reason", "source_id",
                "recipient_code", "attempts", "available_at", "created_at", "updated_at"),
    "postings": ("entry_id", "account_id", "amount", "currency", "created_at"),
}
# The holders' `payable` accounts the distribution's entry created (or updated): rows it writes too,
# which the ceiling of the three tables above leaves out.
ACCOUNT_COLUMNS = ("id", "name", "currency", "guarded", "balance", "version", "created_at")


async def copy_ceiling(dsn: str, distribution_id: str) -> tuple[float, int, float, int]:
    """The very rows the distribution wrote (its allocations, payouts and postings), read back and
    written again by COPY into empty tables shaped like the real ones, indexes included; then, apart,
    the ledger accounts its entry touched. Returns the seconds and rows of each."""
    conn = await asyncpg.connect(dsn)
    entry_key = f"distribution:{distribution_id}"
    try:
        written = {
            "distribution_allocations": await conn.fetch(
                "SELECT distribution_id, user_id, shares, amount, payout_id FROM distribution_allocations "
                "WHERE distribution_id = $1 ORDER BY user_id", distribution_id),
            "payouts": await conn.fetch(
                f"SELECT {', '.join(CEILING_TABLES['payouts'])} FROM payouts WHERE source_id = $1 ORDER BY id",
                distribution_id),
            "postings": await conn.fetch(
                "SELECT p.entry_id, p.account_id, p.amount, p.currency, p.created_at FROM postings p "
                "JOIN journal_entries e ON e.id = p.entry_id WHERE e.idempotency_key = $1 ORDER BY p.id",
                entry_key),
        }
        records = {table: [tuple(row) for row in rows] for table, rows in written.items()}
        account_records = [tuple(row) for row in await conn.fetch(
            f"SELECT {', '.join(f'a.{column}' for column in ACCOUNT_COLUMNS)} FROM ledger_accounts a "
            "JOIN postings p ON p.account_id = a.id JOIN journal_entries e ON e.id = p.entry_id "
            "WHERE e.idempotency_key = $1 ORDER BY a.name", entry_key)]
        for table in (*CEILING_TABLES, "ledger_accounts"):
            await conn.execute(f"DROP TABLE IF EXISTS ceiling_{table}")
            await conn.execute(f"CREATE TABLE ceiling_{table} (LIKE {table} INCLUDING ALL)")
        started = time.perf_counter()
        async with conn.transaction():
            for table, columns in CEILING_TABLES.items():
                await conn.copy_records_to_table(f"ceiling_{table}", columns=list(columns), records=records[table])
        tables_seconds = time.perf_counter() - started
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("ceiling_ledger_accounts", columns=list(ACCOUNT_COLUMNS),
                                             records=account_records)
        accounts_seconds = time.perf_counter() - started
        return (tables_seconds, sum(len(rows) for rows in records.values()), accounts_seconds,
                len(account_records))
    finally:
        await conn.close()


async def one_size(pg: str, holders: int) -> tuple[float, float, float, float]:
    name = run_database_name("bench_distributions")
    await fresh_database(pg, name)
    try:
        return await measure(pg, name, holders)
    finally:
        await drop_database(pg, name)


async def measure(pg: str, name: str, holders: int) -> tuple[float, float, float, float]:
    """Prints one round's figures; returns the seconds of the first distribution, of the ceiling, of the
    ceiling with the ledger accounts, and of the second distribution (the holders' accounts exist)."""
    url, dsn = f"postgresql+asyncpg://{pg}/{name}", f"postgresql://{pg}/{name}"
    rt = offline_runtime(url)
    async with rt.db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await seed(rt, dsn, "app-bench", holders)
    admin = Principal(user_id="bench-admin", roles=frozenset({"admin"}))

    weights = holding_sizes(holders)
    started = time.perf_counter()
    net = REVENUE - percentage_of(REVENUE, 250)
    allocate(net, weights)
    split_seconds = time.perf_counter() - started

    async def distribute(period: str) -> tuple[str, int, float]:
        body = DistributionIn(period=period, currency="NGN")
        started = time.perf_counter()
        async with rt.db.unit_of_work() as session:
            plan = await plan_distribution(session, rt, admin, "app-bench", body)
            distribution = await write_distribution(session, rt, admin, plan, body.period)
        return distribution.id, distribution.allocations, time.perf_counter() - started

    started = time.perf_counter()
    async with rt.db.unit_of_work() as session:
        await plan_distribution(session, rt, admin, "app-bench", DistributionIn(period=PERIODS[0], currency="NGN"))
    plan_seconds = time.perf_counter() - started

    distribution_id, allocations, whole_seconds = await distribute(PERIODS[0])
    ceiling_seconds, rows, accounts_seconds, account_rows = await copy_ceiling(dsn, distribution_id)
    await seed_revenue(rt, "app-bench", PERIODS[1])
    _, _, second_seconds = await distribute(PERIODS[1])
    async with rt.db.unit_of_work() as session:
        checks = await run_checks(session)
    await rt.gateway.aclose()
    await rt.db.dispose()
    whole_rate, ceiling_rate = rows / whole_seconds, rows / ceiling_seconds
    full_ceiling = ceiling_seconds + accounts_seconds
    print(f"H={holders:,} holders: distribution {distribution_id}, {allocations:,} allocations")
    print(f"  split alone (largest remainder)      {split_seconds * 1000:10.1f} ms")
    print(f"  allocation (cap table read + split)  {plan_seconds * 1000:10.1f} ms")
    print(f"  whole distribution, committed        {whole_seconds:10.2f} s   {whole_rate:12,.0f} rows/s "
          f"({rows:,} rows)")
    print(f"  ceiling: COPY of the same rows       {ceiling_seconds:10.2f} s   {ceiling_rate:12,.0f} rows/s")
    print(f"  ratio whole / COPY                   {whole_rate / ceiling_rate:10.2f}")
    print(f"  ceiling with the {account_rows:,} ledger accounts the entry touched, by COPY too: "
          f"{full_ceiling:.2f} s, ratio whole / COPY {full_ceiling / whole_seconds:.2f}")
    print(f"  next period's distribution, the holders' accounts there: {second_seconds:.2f} s, "
          f"ratio whole / COPY {ceiling_seconds / second_seconds:.2f}")
    print(f"  integrity                            {'ok' if all(c.ok for c in checks) else 'FAILED'}")
    if not all(c.ok for c in checks):
        sys.exit(1)
    return whole_seconds, ceiling_seconds, full_ceiling, second_seconds


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--holders", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds per size, each on a fresh database; the medians are printed after them")
    args = parser.parse_args()
    for holders in args.holders:
        rounds = [await one_size(args.pg, holders) for _ in range(args.rounds)]
        if args.rounds > 1:
            whole = statistics.median(w for w, _, _, _ in rounds)
            ratio = statistics.median(c / w for w, c, _, _ in rounds)
            full_ratio = statistics.median(f / w for w, _, f, _ in rounds)
            second = statistics.median(s for _, _, _, s in rounds)
            print(f"H={holders:,} over {args.rounds} rounds: whole distribution median {whole:.2f} s, "
                  f"ratio whole / COPY median {ratio:.2f} (with the ledger accounts {full_ratio:.2f}); "
                  f"next period's {second:.2f} s")

if __name__ == "__main__":
    asyncio.run(main())
