"""The Bank test: a seeded random schedule of concurrent investments, releases, refunds, disputes, share
sales, revenue and distributions against two instances of the service on PostgreSQL, the sandbox
gateway injecting faults, the worker's jobs in between; then the books must hold (tests/bank_model.py
says what is checked). A failure prints the seed, and `BANK_SEED=... BANK_OPS=...` runs that schedule
again; bench/bank.py runs the same engine at 2,000 operations.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import pytest

from app.core.config import Settings
from tests.bank_model import BANK_SETTINGS, FAULT_KINDS, WEIGHTS, plan_schedule, report, run_bank, service
from tests.conftest import TEST_DATABASE_URL, requires_postgres

SEEDS = [int(os.environ["BANK_SEED"])] if os.environ.get("BANK_SEED") else [20261128, 8]
OPERATIONS = int(os.environ.get("BANK_OPS", "200"))
INSTANCES = 2


@requires_postgres
@pytest.mark.parametrize("seed", SEEDS)
async def test_bank(make_settings: Callable[..., Settings], seed: int) -> None:
    settings = make_settings(**BANK_SETTINGS)
    async with service(settings, INSTANCES) as instances:
        tally = await run_bank(instances, settings, seed=seed, operations=OPERATIONS)
    summary = report(tally, seed=seed, operations=OPERATIONS,
                     engine=f"PostgreSQL, {INSTANCES} instances" if TEST_DATABASE_URL else "SQLite")
    print(summary)
    assert not tally.violations, summary


def test_a_seed_stands_for_one_schedule() -> None:
    """The replay promise: one seed, one schedule, operation for operation; another seed, another one.
    A long schedule holds every operation and every fault."""
    assert plan_schedule(7, 300) == plan_schedule(7, 300)
    assert plan_schedule(7, 300) != plan_schedule(8, 300)
    long = plan_schedule(7, 2000)
    assert sum(len(step.ops) for step in long) == 2000
    assert Counter(op.kind for step in long for op in step.ops).keys() == WEIGHTS.keys()
    assert {fault.action for step in long for fault in step.faults} == {action for action, _ in FAULT_KINDS}
    assert any(op.twice for step in long for op in step.ops)
