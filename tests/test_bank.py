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
from types import SimpleNamespace

import pytest

from app.core.config import Settings
from app.ledger import accounts
from tests.bank_model import (
    BANK_SETTINGS,
    CURRENCY,
    FAULT_KINDS,
    WEIGHTS,
    Credit,
    Tally,
    charges_credited_once,
    gateway_money_conserved,
    plan_schedule,
    refunds_sent_at_most_once,
    refunds_within_charges,
    report,
    run_bank,
    service,
    transfers_sent_at_most_once,
)
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
    assert {fault.action for step in long for fault in step.faults} == {action for action, _, _ in FAULT_KINDS}
    assert any(op.twice for step in long for op in step.ops)


# ---- the checks can fail: each fed the records of a fault it exists to catch ------------------------------

OUR_REFUND = "rfd_" + "0" * 28


def failed(tally: Tally) -> list[str]:
    return [name for name, ok, _ in tally.checks if not ok]


def test_a_refund_or_a_transfer_sent_twice_is_caught() -> None:
    tally = Tally()
    gateway = SimpleNamespace(refunds={1: SimpleNamespace(merchant_note=f"{OUR_REFUND} asked"),
                                       2: SimpleNamespace(merchant_note=f"{OUR_REFUND} asked")})
    refunds_sent_at_most_once(tally, [SimpleNamespace(id=OUR_REFUND, status="processed")], gateway)
    paid = SimpleNamespace(reference="payout-0001", status="paid")
    twice = [SimpleNamespace(reference="payout-0001", status="success")] * 2  # the first never failed
    transfers_sent_at_most_once(tally, [paid], SimpleNamespace(transfer_history=twice))
    assert failed(tally) == ["each_refund_sent_at_most_once", "each_payout_sent_at_most_once"]


def test_a_retry_after_a_conclusive_failure_is_not_a_second_send() -> None:
    tally = Tally()
    paid = SimpleNamespace(reference="payout-0001", status="paid")
    retried = [SimpleNamespace(reference="payout-0001", status=status) for status in ("failed", "reversed", "success")]
    transfers_sent_at_most_once(tally, [paid], SimpleNamespace(transfer_history=retried))
    assert failed(tally) == []


def test_books_that_disagree_with_the_gateway_are_caught() -> None:
    tally = Tally()
    gateway = SimpleNamespace(transactions={"pay-1": SimpleNamespace(status="success", amount=150_000)},
                              refunds={}, transfer_history=[])
    gateway_money_conserved(tally, {accounts.gateway(CURRENCY): -100_000}, gateway)
    charge = SimpleNamespace(id="pay_1", reference="pay-1", status="success", amount=150_000)
    twice = {"deposit:pay-1": Credit("deposit:pay-1", {accounts.gateway(CURRENCY): -150_000}),
             "revenue:pay-1": Credit("revenue:pay-1", {accounts.gateway(CURRENCY): -150_000})}
    charges_credited_once(tally, [charge], twice, [], [], gateway)
    refund = SimpleNamespace(payment_id="pay_1", amount=150_001, status="processed")
    refunds_within_charges(tally, [SimpleNamespace(**vars(charge), refunded_amount=150_001)], [refund])
    assert failed(tally) == ["gateway_money_matches_the_books", "each_charge_credited_once", "refunds_within_charges"]
