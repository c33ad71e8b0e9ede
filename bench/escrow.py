"""Releases and refunds on ONE hot escrow account against PostgreSQL, with raw asyncpg as the ceiling.

K concurrent workers ask for releases and refunds, alternately, against random
deposits of one app, so every journal entry goes through that app's escrow
account; then each worker against its own app. They go through the escrow
queue exactly as the HTTP routes do: a refund is the refund route's own
service call (`request_refund`), a release is the movement that executing a
release applies (`escrow:app -> payable:user:{owner}`, a release row, the
owner's payout), and concurrent movements share a transaction and one ledger
statement. In the same run, raw asyncpg transactions doing `UPDATE ... SET
balance = balance - x` on one row give the ceiling; and the ledger alone
(`post()` on the hot account, one entry per transaction, in pairs that return
the money) shows what one posting per transaction costs. Prints postings/s, the
ratio to the ceiling, p50/p99 of the ledger statement (a batch's entries, the
wait for the account's row lock included), the client processes' CPU per
posting (steadier than a rate on a shared machine) and the integrity check
(ledger and escrow-versus-deposits).

    python bench/escrow.py --workers 16 --seconds 10 --processes 1
    python bench/escrow.py --workers 16 32 64 --seconds 10    # a table of the ratio as callers grow
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any

import asyncpg
from common import (
    analyze,
    drop_database,
    fresh_database,
    offline_runtime,
    percentile,
    run_database_name,
    run_on_service_loop,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import app.escrow.movements as movements
import app.ledger.service as ledger
from app.core.config import Settings
from app.core.db import Database
from app.core.security import Principal
from app.escrow import group_commit
from app.escrow.flows import request_refund
from app.escrow.group_commit import Finish
from app.escrow.movements import ReleaseMoney
from app.escrow.service import EscrowService
from app.ledger import accounts
from app.ledger.integrity import run_checks
from app.ledger.service import Leg, move
from app.models import App, Base, EscrowTransaction, Payment
from app.models.base import new_id

BENCH_ADMIN = Principal(user_id="bench-admin", roles=frozenset({"admin"}))

DEPOSITS_PER_APP = 64
DEPOSIT = Decimal("10000000000.00")  # never runs out during a run
SEED = 10**15  # the ceiling's row starts this high


async def prepare(url: str, apps: list[str]) -> None:
    rt = offline_runtime(url, db_pool_size=4, db_max_overflow=0)
    async with rt.db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    for app_id in apps:
        async with rt.db.unit_of_work() as session:
            app = App(id=app_id, name=app_id, owner_id=f"owner-{app_id}", currency="NGN", share_price=100,
                      total_shares=10**12, shares_issued=0, approvers=[], required_approvals=1, lock_in_days=0,
                      platform_fee_hundredths=0)
            session.add(app)
            for i in range(DEPOSITS_PER_APP):
                reference = f"bench-{app_id}-{i}"
                payment = Payment(id=new_id("pay"), reference=reference, user_id=f"investor-{i}", app_id=app_id,
                                  payment_type="investment", status="success", amount=int(DEPOSIT * 100),
                                  currency="NGN", email="b@example.com", extra={}, refunded_amount=0)
                session.add(payment)
                await session.flush()
                await EscrowService(session).process_deposit(
                    app=app, investor=payment.user_id, amount=DEPOSIT, currency="NGN", payment_gateway="PAYSTACK",
                    gateway_reference=reference, payment_id=payment.id)
    await rt.gateway.aclose()
    await rt.db.dispose()


async def ledger_worker_group(url: str, apps: list[str], seconds: float) -> tuple[int, list[float]]:
    """One process: a task per entry of `apps`, each releasing and refunding against that app until
    time is up, through the escrow queue the HTTP routes use (concurrent movements share a commit)."""
    rt = offline_runtime(url, db_pool_size=len(apps) + 2, db_max_overflow=0)
    latencies: list[float] = []
    timed_post = movements.post_entries

    async def post_timed(*args: object, **kwargs: object) -> list[int]:
        started = time.perf_counter()
        try:
            return await timed_post(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            latencies.append(time.perf_counter() - started)

    # time the ledger statement (a batch's entries, the wait for the account's lock included)
    movements.post_entries = post_timed  # type: ignore[assignment]
    async with rt.db.unit_of_work() as session:
        app_rows = {a.id: a for a in (await session.scalars(select(App).where(App.id.in_(set(apps))))).all()}
        deposit_ids = {
            app_id: (await session.scalars(select(EscrowTransaction.id).where(
                EscrowTransaction.app_id == app_id, EscrowTransaction.type == "deposit"))).all()
            for app_id in set(apps)
        }
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(index: int, app_id: str) -> None:
        nonlocal done
        rng = random.Random(index)
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            deposit_id = rng.choice(deposit_ids[app_id])
            if n % 2:
                # what executing a release moves (the release request's own rows aside)
                async def prepare(session: AsyncSession, deposit_id: str = deposit_id) -> tuple[ReleaseMoney, Finish]:
                    async def finish(outcome: object) -> object:
                        return outcome

                    return ReleaseMoney(app=app_rows[app_id], currency="NGN", items=[(deposit_id, 100)],
                                        source_id=new_id("bench"), milestone_id=None), finish

                await group_commit.run(rt, prepare)
            else:  # exactly what POST /v1/escrow/transactions/{id}/refunds runs
                await request_refund(rt, BENCH_ADMIN, deposit_id, amount=Decimal("1.00"), reason="bench")
            done += 1

    await asyncio.gather(*(worker(i, app_id) for i, app_id in enumerate(apps)))
    movements.post_entries = timed_post  # type: ignore[assignment]
    await rt.gateway.aclose()
    await rt.db.dispose()
    return done, latencies


async def posting_worker_group(url: str, workers: int, seconds: float) -> tuple[int, list[float]]:
    """The ledger alone: each worker posts `escrow:app:hot -> refund:in_flight` and back again with
    `post()`, one entry per unit of work, always finishing a pair so the books still match."""
    rt = offline_runtime(url, db_pool_size=workers + 2, db_max_overflow=0)
    escrow, in_flight = accounts.escrow("hot", "NGN"), accounts.refund_in_flight("NGN")
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        n = 0
        while n % 2 or time.perf_counter() < deadline:
            n += 1
            legs = move(escrow, in_flight, 100) if n % 2 else move(in_flight, escrow, 100)

            async def work(session: AsyncSession, legs: list[Leg] = legs) -> None:
                started = time.perf_counter()
                await ledger.post(session, kind="bench", legs=legs)
                latencies.append(time.perf_counter() - started)

            await rt.db.run(work)
            done += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    await rt.gateway.aclose()
    await rt.db.dispose()
    return done, latencies


async def raw_worker_group(dsn: str, tasks: int, seconds: float) -> tuple[int, list[float]]:
    pool = await asyncpg.create_pool(dsn, min_size=tasks, max_size=tasks)
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute("UPDATE bench_hot SET balance = balance - $1 WHERE id = 1", 100)
                latencies.append(time.perf_counter() - started)
                done += 1

    await asyncio.gather(*(worker() for _ in range(tasks)))
    await pool.close()
    return done, latencies


# Each phase's process also reports the CPU it used: CPU per posting is steadier than a rate on a shared
# machine, so changes to the escrow path are compared on it.
Phase = tuple[int, list[float], float]  # (postings, statement latencies, client CPU seconds)


def _cpu_timed(work: Coroutine[Any, Any, tuple[int, list[float]]]) -> Phase:
    started = time.process_time()
    done, latencies = run_on_service_loop(work)
    return done, latencies, time.process_time() - started


def _run_ledger(args: tuple[str, list[str], float]) -> Phase:
    return _cpu_timed(ledger_worker_group(*args))


def _run_postings(args: tuple[str, int, float]) -> Phase:
    return _cpu_timed(posting_worker_group(*args))


def _run_raw(args: tuple[str, int, float]) -> Phase:
    return _cpu_timed(raw_worker_group(*args))


def spread(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


def run_phase(pool: multiprocessing.pool.Pool, fn, jobs: list) -> tuple[float, int, list[float], float]:  # type: ignore[type-arg]
    """Wall seconds, postings, statement latencies and the client processes' CPU seconds of one phase."""
    started = time.perf_counter()
    results = pool.map(fn, jobs)
    elapsed = time.perf_counter() - started
    return elapsed, sum(r[0] for r in results), [lat for r in results for lat in r[1]], sum(r[2] for r in results)


async def integrity(url: str) -> bool:
    db = Database(Settings(_env_file=None, database_url=url))
    async with db.unit_of_work() as session:
        checks = await run_checks(session)
    await db.dispose()
    for check in checks:
        if not check.ok:
            print(f"  integrity check failed: {check.name} {check.details}")
    return all(check.ok for check in checks)


async def fresh_database_with_ceiling_row(pg: str, name: str) -> None:
    await fresh_database(pg, name)
    conn = await asyncpg.connect(f"postgresql://{pg}/{name}")
    try:
        await conn.execute("CREATE TABLE bench_hot (id int PRIMARY KEY, balance bigint NOT NULL)")
        await conn.execute("INSERT INTO bench_hot VALUES (1, $1)", SEED)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[16],
                        help="K concurrent posting workers; several values run one after another, each on a "
                             "fresh database with its own ceiling, and end with a table of the ratios")
    parser.add_argument("--processes", type=int, default=1, help="client processes sharing the K workers")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    parser.add_argument("--database", help="keep the database, under this name (default: one of the run's own, "
                        "dropped at the end)")
    args = parser.parse_args()
    if args.database and len(args.workers) > 1:
        parser.error("--database keeps one run's database: give one --workers value with it")
    ratios = []
    for workers in args.workers:
        name = args.database or run_database_name("bench_escrow")
        asyncio.run(fresh_database_with_ceiling_row(args.pg, name))
        try:
            hot_rate, raw_rate, hot_cpu = measure(args, workers, name)
        finally:
            if not args.database:
                asyncio.run(drop_database(args.pg, name))
        ratios.append((workers, hot_rate, raw_rate, hot_cpu))
    if len(ratios) > 1:
        # A batch costs about the same whatever its size; the raw UPDATEs queue on the row's lock instead.
        print("\n| K workers | hot account postings/s | raw UPDATE tx/s | ratio | hot client CPU per posting ms |\n"
              "|---|---|---|---|---|")
        for workers, hot_rate, raw_rate, hot_cpu in ratios:
            print(f"| {workers} | {hot_rate:.1f} | {raw_rate:.1f} | {hot_rate / raw_rate:.2f} | {hot_cpu * 1000:.3f} |")


def measure(args: argparse.Namespace, workers: int, name: str) -> tuple[float, float, float]:
    """Runs the four phases with `workers` callers; prints them and returns the hot account's postings/s, the
    ceiling's transactions/s and the hot account's client CPU seconds per posting."""
    url = f"postgresql+asyncpg://{args.pg}/{name}"
    dsn = f"postgresql://{args.pg}/{name}"
    many = [f"app-{i}" for i in range(workers)]

    asyncio.run(prepare(url, ["hot", *many]))
    asyncio.run(analyze(dsn))
    processes = min(args.processes, workers)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        hot_jobs = [(url, ["hot"] * len(part), args.seconds) for part in spread(many, processes)]
        hot_elapsed, hot_done, hot_lat, hot_cpu = run_phase(pool, _run_ledger, hot_jobs)
        spread_jobs = [(url, part, args.seconds) for part in spread(many, processes)]
        spread_elapsed, spread_done, spread_lat, spread_cpu = run_phase(pool, _run_ledger, spread_jobs)
        post_jobs = [(url, len(part), args.seconds) for part in spread(many, processes)]
        post_elapsed, post_done, post_lat, post_cpu = run_phase(pool, _run_postings, post_jobs)
        raw_jobs = [(dsn, len(part), args.seconds) for part in spread(many, processes)]
        raw_elapsed, raw_done, raw_lat, _ = run_phase(pool, _run_raw, raw_jobs)

    hot_rate, spread_rate, raw_rate = hot_done / hot_elapsed, spread_done / spread_elapsed, raw_done / raw_elapsed
    post_rate = post_done / post_elapsed
    ok = asyncio.run(integrity(url))
    print(f"escrow bench: K={workers} workers in {processes} process(es), {args.seconds:.0f} s per phase, "
          f"PostgreSQL, releases and refunds alternating over {DEPOSITS_PER_APP} deposits per app")
    print(f"  one hot escrow account    {hot_rate:9.1f} postings/s   statement p50 "
          f"{statistics.median(hot_lat) * 1000:.2f} ms, p99 lock wait incl. {percentile(hot_lat, 0.99) * 1000:.2f} ms")
    print(f"  K different apps          {spread_rate:9.1f} postings/s   statement p50 "
          f"{statistics.median(spread_lat) * 1000:.2f} ms, p99 {percentile(spread_lat, 0.99) * 1000:.2f} ms")
    print(f"  hot account, ledger only  {post_rate:9.1f} postings/s   statement p50 "
          f"{statistics.median(post_lat) * 1000:.2f} ms, p99 lock wait incl. "
          f"{percentile(post_lat, 0.99) * 1000:.2f} ms")
    print(f"  client CPU per posting     hot {hot_cpu / hot_done * 1000:.3f} ms, K apps "
          f"{spread_cpu / spread_done * 1000:.3f} ms, ledger only {post_cpu / post_done * 1000:.3f} ms")
    print(f"  ceiling: raw asyncpg UPDATE on one row {raw_rate:9.1f} tx/s   p99 "
          f"{percentile(raw_lat, 0.99) * 1000:.2f} ms")
    print(f"  ratio hot / ceiling        {hot_rate / raw_rate:9.2f}")
    print(f"  ratio K apps / ceiling     {spread_rate / raw_rate:9.2f}")
    print(f"  ratio ledger only / ceiling {post_rate / raw_rate:8.2f}")
    print(f"  integrity                  {'ok' if ok else 'FAILED'}")
    if not ok:
        sys.exit(1)
    return hot_rate, raw_rate, hot_cpu / hot_done


if __name__ == "__main__":
    main()
