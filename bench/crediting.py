"""The crediting transaction alone: what the worker's group commit runs for a batch of verified charges,
against PostgreSQL, in this process, with no HTTP and no gateway.

It seeds N pending investment payments of one app, then applies a successful verdict to each through
`apply_verifications` (the one place charge outcomes are applied: payments marked paid, shares issued,
deposits held in escrow, journal entries, outbound events), B charges per transaction, and prints the
process's CPU time and the wall time per credited payment for each batch size B. The worker's batches
are as large as the verify answers that arrive while the previous batch commits, at most 128: about 50
on average under the webhook burst in a worker process of its own (128 events in flight), about 20 in the
API process's worker (48 in flight), a few of 1-5 at the end of each inbox claim. CPU per payment is
steadier than a rate on a shared machine, so changes to the crediting path are compared on it. Then it
checks that every payment was credited once (a deposit each) and the ledger's integrity.

    python bench/crediting.py --n 4800 --batch 8 48
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import analyze, drop_database, fresh_database, offline_runtime, run_database_name, run_on_service_loop
from sqlalchemy import func, select

from app.gateway.types import VerifiedTransaction
from app.ledger.integrity import run_checks
from app.models import App, Base, EscrowTransaction, Payment
from app.models.base import new_id
from app.payments.service import apply_verifications
from app.runtime import Runtime

SHARE_PRICE = 100
SHARES = 100
INVESTORS = 500


async def seed(rt: Runtime, n: int) -> list[str]:
    async with rt.db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    references = [f"pay-bench-{i}" for i in range(n)]
    async with rt.db.unit_of_work() as session:
        session.add(App(id="bench", name="bench", owner_id="owner", currency="NGN", share_price=SHARE_PRICE,
                        total_shares=10**12, shares_issued=0, approvers=[], required_approvals=1, lock_in_days=0,
                        platform_fee_hundredths=0))
        session.add_all(
            Payment(id=new_id("pay"), reference=reference, user_id=f"investor-{i % INVESTORS}", app_id="bench",
                    payment_type="investment", status="pending", amount=SHARE_PRICE * SHARES, currency="NGN",
                    email="b@example.com", extra={}, refunded_amount=0, shares=SHARES)
            for i, reference in enumerate(references))
    return references


def verdict(number: int, reference: str) -> VerifiedTransaction:
    return VerifiedTransaction(
        id=number, status="success", reference=reference, amount=SHARE_PRICE * SHARES, currency="NGN", paid_at=None,
        channel="card", gateway_response="Successful", fees=150, metadata={}, authorization_code=f"AUTH_{number}",
        customer_email="b@example.com")


async def measure(pg: str, n: int, batch: int) -> tuple[float, float, bool]:
    """CPU and wall seconds per credited payment, and whether the books and the deposits are right."""
    name = run_database_name("bench_crediting")
    await fresh_database(pg, name)
    rt = offline_runtime(f"postgresql+asyncpg://{pg}/{name}")
    try:
        references = await seed(rt, n)
        await analyze(f"postgresql://{pg}/{name}")
        verdicts = [(reference, verdict(i + 1, reference)) for i, reference in enumerate(references)]
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, n, batch):
            chunk = verdicts[start:start + batch]
            await rt.db.run(lambda session, chunk=chunk: apply_verifications(session, rt, chunk))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        async with rt.db.unit_of_work() as session:
            paid = await session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "success"))
            held = await session.scalar(select(func.count(func.distinct(EscrowTransaction.payment_id))).where(
                EscrowTransaction.type == "deposit"))
            checks = await run_checks(session)
        ok = paid == n and held == n and all(check.ok for check in checks)
        return cpu / n, wall / n, ok
    finally:
        await rt.db.dispose()
        await drop_database(pg, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4800, help="payments credited per run")
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 48], help="charges per transaction")
    parser.add_argument("--rounds", type=int, default=3, help="runs per batch size, each on a fresh database")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    args = parser.parse_args()
    print(f"crediting bench: N={args.n} payments per run, {args.rounds} run(s) per batch size, PostgreSQL")
    healthy = True
    for batch in args.batch:
        runs = [run_on_service_loop(measure(args.pg, args.n, batch)) for _ in range(args.rounds)]
        cpu = statistics.median(run[0] for run in runs) * 1000
        wall = statistics.median(run[1] for run in runs) * 1000
        ok = all(run[2] for run in runs)
        healthy &= ok
        print(f"  batch {batch:3d}   CPU per credited {cpu:6.3f} ms   wall per credited {wall:6.3f} ms   "
              f"(medians; runs {', '.join(f'{run[0] * 1000:.3f}' for run in runs)})   books and deposits "
              f"{'ok' if ok else 'WRONG'}")
    if not healthy:
        sys.exit(1)


if __name__ == "__main__":
    main()
