"""Ledger postings on ONE hot escrow account against PostgreSQL, with raw asyncpg as the ceiling.

K concurrent workers post release-shaped (`escrow:app -> payable:user`) and
refund-shaped (`escrow:app -> refund:in_flight`) journal entries through
`app.ledger.service.post`, each in its own unit of work (the real posting path),
first all against one app's escrow account, then each worker against its own
app. In the same run, raw asyncpg transactions doing `UPDATE ... SET balance =
balance - x` on one row give the ceiling. Prints postings/s, the ratio to the
ceiling, latency of the posting statement (which includes waiting for the
account's row lock), and the integrity check.

    python bench/escrow.py --workers 16 --seconds 10 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.core.db import Database  # noqa: E402
from app.ledger import accounts  # noqa: E402
from app.ledger.integrity import run_checks  # noqa: E402
from app.ledger.service import move, post  # noqa: E402
from app.models import Base  # noqa: E402

SEED = 10**15  # minor units in each escrow account before the run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def prepare(url: str, apps: list[str]) -> None:
    settings = Settings(_env_file=None, database_url=url)
    db = Database(settings)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    for app_id in apps:
        async with db.unit_of_work() as session:
            await post(session, kind="deposit", legs=move(accounts.gateway("NGN"), accounts.escrow(app_id, "NGN"), SEED))
    await db.dispose()


async def ledger_worker_group(url: str, apps: list[str], seconds: float) -> tuple[int, list[float]]:
    """One process: a task per entry of `apps`, each posting against that app until time is up."""
    settings = Settings(_env_file=None, database_url=url, db_pool_size=len(apps) + 2, db_max_overflow=0)
    db = Database(settings)
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(index: int, app_id: str) -> None:
        nonlocal done
        escrow = accounts.escrow(app_id, "NGN")
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            legs = (move(escrow, accounts.payable(f"owner-{index % 8}", "NGN"), 100) if n % 2
                    else move(escrow, accounts.refund_in_flight("NGN"), 100))

            async def work(session: AsyncSession) -> None:
                started = time.perf_counter()
                await post(session, kind="release" if n % 2 else "refund", legs=legs)
                latencies.append(time.perf_counter() - started)

            await db.run(work)
            done += 1

    await asyncio.gather(*(worker(i, app_id) for i, app_id in enumerate(apps)))
    await db.dispose()
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


def _run_ledger(args: tuple[str, list[str], float]) -> tuple[int, list[float]]:
    return asyncio.run(ledger_worker_group(*args))


def _run_raw(args: tuple[str, int, float]) -> tuple[int, list[float]]:
    return asyncio.run(raw_worker_group(*args))


def spread(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


def run_phase(pool: multiprocessing.pool.Pool, fn, jobs: list) -> tuple[float, int, list[float]]:  # type: ignore[type-arg]
    started = time.perf_counter()
    results = pool.map(fn, jobs)
    elapsed = time.perf_counter() - started
    return elapsed, sum(r[0] for r in results), [lat for r in results for lat in r[1]]


async def integrity(url: str) -> bool:
    db = Database(Settings(_env_file=None, database_url=url))
    async with db.unit_of_work() as session:
        checks = await run_checks(session)
    await db.dispose()
    for check in checks:
        if not check.ok:
            print(f"  integrity check failed: {check.name} {check.details}")
    return all(check.ok for check in checks)


async def fresh_database(pg: str, name: str) -> None:
    conn = await asyncpg.connect(f"postgresql://{pg}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(f"postgresql://{pg}/{name}")
    try:
        await conn.execute("CREATE TABLE bench_hot (id int PRIMARY KEY, balance bigint NOT NULL)")
        await conn.execute("INSERT INTO bench_hot VALUES (1, $1)", SEED)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=16, help="K concurrent posting workers")
    parser.add_argument("--processes", type=int, default=2, help="client processes sharing the K workers")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="bench_escrow")
    args = parser.parse_args()
    url = f"postgresql+asyncpg://{args.pg}/{args.database}"
    dsn = f"postgresql://{args.pg}/{args.database}"
    many = [f"app-{i}" for i in range(args.workers)]

    asyncio.run(fresh_database(args.pg, args.database))
    asyncio.run(prepare(url, ["hot", *many]))
    processes = min(args.processes, args.workers)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        hot_jobs = [(url, ["hot"] * len(part), args.seconds) for part in spread(many, processes)]
        hot_elapsed, hot_done, hot_lat = run_phase(pool, _run_ledger, hot_jobs)
        spread_jobs = [(url, part, args.seconds) for part in spread(many, processes)]
        spread_elapsed, spread_done, spread_lat = run_phase(pool, _run_ledger, spread_jobs)
        raw_jobs = [(dsn, len(part), args.seconds) for part in spread(many, processes)]
        raw_elapsed, raw_done, raw_lat = run_phase(pool, _run_raw, raw_jobs)

    hot_rate, spread_rate, raw_rate = hot_done / hot_elapsed, spread_done / spread_elapsed, raw_done / raw_elapsed
    ok = asyncio.run(integrity(url))
    print(f"escrow ledger bench: K={args.workers} workers in {processes} process(es), {args.seconds:.0f} s per phase, "
          "PostgreSQL")
    print(f"  one hot escrow account    {hot_rate:9.1f} postings/s   statement p50 "
          f"{statistics.median(hot_lat) * 1000:.2f} ms, p99 lock wait incl. {percentile(hot_lat, 0.99) * 1000:.2f} ms")
    print(f"  K different apps          {spread_rate:9.1f} postings/s   statement p50 "
          f"{statistics.median(spread_lat) * 1000:.2f} ms, p99 {percentile(spread_lat, 0.99) * 1000:.2f} ms")
    print(f"  ceiling: raw asyncpg UPDATE on one row {raw_rate:9.1f} tx/s   p99 "
          f"{percentile(raw_lat, 0.99) * 1000:.2f} ms")
    print(f"  ratio hot / ceiling        {hot_rate / raw_rate:9.2f}")
    print(f"  ratio K apps / ceiling     {spread_rate / raw_rate:9.2f}")
    print(f"  integrity                  {'ok' if ok else 'FAILED'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
