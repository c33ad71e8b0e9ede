"""The Bank test at scale: the engine of tests/bank_model.py (a seeded schedule of concurrent operations
over several instances of the service on one PostgreSQL database, the sandbox gateway injecting faults,
the worker's jobs in between, then a drain and the checks) on a database of its own. Prints the seed,
the operations by kind and answer, the faults injected and the final checks; exits 1 on any violation.

    python bench/bank.py --ops 2000 --seed 7
    python bench/bank.py --ops 2000 --seed 7 --instances 3 --batch 8   (more contention; another schedule)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys

from common import drop_database, fresh_database
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.models import Base
from tests.bank_model import BANK_SETTINGS, BASE_URL, MAX_BATCH, report, run_bank, service


async def prepare(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await engine.dispose()


async def main(args: argparse.Namespace) -> int:
    name = f"bank_bench_{os.getpid()}"
    await fresh_database(args.pg, name)
    url = f"postgresql+asyncpg://{args.pg}/{name}"
    await prepare(url)
    settings = Settings(_env_file=None, database_url=url, public_base_url=BASE_URL, payment_gateway_mode="sandbox",
                        jwt_secret="bank-bench-jwt-secret-0123456789abcdef", **BANK_SETTINGS)
    try:
        async with service(settings, args.instances) as instances:
            tally = await run_bank(instances, settings, seed=args.seed, operations=args.ops, max_batch=args.batch)
    finally:
        await drop_database(args.pg, name)
    print(report(tally, seed=args.seed, operations=args.ops,
                 engine=f"PostgreSQL, {args.instances} instances, up to {args.batch} operations at once"))
    return 1 if tally.violations else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=2000, help="operations in the schedule (default 2000)")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (default: a random one, printed)")
    parser.add_argument("--instances", type=int, default=2, help="instances of the service on the database")
    parser.add_argument("--batch", type=int, default=MAX_BATCH, help="operations at once, at most (the schedule's)")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="PostgreSQL user@host:port")
    arguments = parser.parse_args()
    if arguments.seed is None:
        arguments.seed = random.randrange(2**31)
    print(f"bank bench: seed {arguments.seed}, {arguments.ops} operations", flush=True)
    sys.exit(asyncio.run(main(arguments)))
