"""Distribution arithmetic as properties: fee plus parts is the amount, to the minor unit, on any cap table.

`plan_distribution` reads the cap table and the revenue from the database, then does exactly
`fee = percentage_of(amount, fee_hundredths)` and `allocate(amount - fee, shares)` over the holders
with shares, in user id order. `split` below is that combination; the pure property runs it on
many skewed cap tables, and the database-backed one checks that the real `plan_distribution` /
`write_distribution` compute the same thing and write it (allocation rows, payouts, ledger).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from app.core.money import allocate, format_percentage, percentage_of, to_major
from app.core.security import Principal
from app.distributions import service as distributions_service
from app.distributions.revenue import RevenuePayment
from app.distributions.schemas import DistributionIn
from app.distributions.service import plan_distribution, write_distribution
from app.ledger import accounts
from app.ledger.integrity import run_checks
from app.ledger.service import balance
from app.models import App, Distribution, DistributionAllocation, Holding, Payment, Payout
from app.models.base import new_id, utcnow
from tests.helpers import OWNER, put_app

Auth = Callable[..., dict[str, str]]

# Skewed holdings: many tiny holders, a few whales, some with nothing left (sold out).
share_counts = st.one_of(
    st.just(0),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=1_000),
    st.integers(min_value=1_000_000, max_value=9_000_000),
)


def _expand(runs: list[tuple[int, int, int]], limit: int) -> list[int]:
    """Runs of similar holders: `count` holders of `base` shares plus a spread of up to `jitter`."""
    shares = [base + (i * 2_654_435_761) % (jitter + 1) for count, base, jitter in runs for i in range(count)]
    return shares[:limit]


def cap_tables(max_holders: int) -> st.SearchStrategy[list[int]]:
    """Share counts per holder (in user id order), at least one holder with shares: either drawn one by
    one (up to 60 holders), or as runs of similar holders, which reach `max_holders` cheaply and bring
    many ties between equal holdings."""
    one_by_one = st.lists(share_counts, min_size=1, max_size=min(max_holders, 60))
    runs = st.lists(
        st.tuples(st.integers(min_value=1, max_value=max_holders), share_counts, st.sampled_from([0, 1, 10, 1_000])),
        min_size=1, max_size=8,
    ).map(lambda r: _expand(r, max_holders))
    return st.one_of(one_by_one, runs).map(lambda shares: shares if any(shares) else [1, *shares[1:]])


amounts = st.one_of(st.integers(min_value=1, max_value=1_000), st.integers(min_value=1, max_value=10**12))
fee_hundredths = st.one_of(st.sampled_from([0, 1, 250, 5_000, 9_999]), st.integers(min_value=0, max_value=9_999))


def split(amount: int, hundredths: int, shares: list[int]) -> tuple[int, list[int]]:
    """The service's arithmetic: the platform fee, then the net by shares with the largest remainder."""
    fee = percentage_of(amount, hundredths)
    return fee, allocate(amount - fee, shares)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(shares=cap_tables(500), amount=amounts, hundredths=fee_hundredths)
def test_fee_and_allocations_add_up_to_the_amount(shares: list[int], amount: int, hundredths: int) -> None:
    fee, parts = split(amount, hundredths, shares)
    net = amount - fee
    total_shares = sum(shares)

    # the fee is the percentage rounded half up, never more than the amount
    assert 0 <= fee <= amount
    assert abs(Fraction(fee) - Fraction(amount * hundredths, 10_000)) <= Fraction(1, 2)
    # every minor unit is accounted for
    assert len(parts) == len(shares)
    assert fee + sum(parts) == amount
    for part, held in zip(parts, shares, strict=True):
        assert part >= 0
        # within one minor unit of the exact share of the net: |part - net * held / total| < 1
        assert abs(part * total_shares - net * held) < total_shares
        if held == 0:
            assert part == 0
    # deterministic
    assert split(amount, hundredths, list(shares)) == (fee, parts)
    # the service leaves zero-share holders out of the call; that changes nobody's part
    positive = [held for held in shares if held]
    assert allocate(net, positive) == [part for part, held in zip(parts, shares, strict=True) if held]


@given(shares=cap_tables(50), amount=amounts)
def test_equal_holders_differ_by_at_most_one_unit_and_ties_go_to_the_earlier_holder(
    shares: list[int], amount: int
) -> None:
    parts = allocate(amount, shares)
    for (i, a), (j, b) in itertools.combinations(enumerate(shares), 2):
        if a == b:
            assert parts[i] - parts[j] in (0, 1), (i, j)  # i < j: the earlier one gets the extra unit


# ---- the real service, against the database ---------------------------------------------------------

_apps = itertools.count()


async def _seed(client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str], shares: list[int], revenue: int,
                hundredths: int) -> tuple[str, list[str]]:
    """An app with these holdings (holding rows written directly) and a successful revenue payment."""
    app_id = f"prop-{next(_apps):03d}"
    await put_app(client, admin, app_id, total_shares=max(sum(shares), 1),
                  platform_fee_percentage=format_percentage(hundredths))
    users = [f"{app_id}-holder-{i:03d}" for i in range(len(shares))]  # sorted in holder order
    rt = app.state.runtime
    async with rt.db.unit_of_work() as session:
        session.add_all(Holding(app_id=app_id, user_id=user_id, shares=held, reserved_shares=0)
                        for user_id, held in zip(users, shares, strict=True))
        await session.execute(update(App).where(App.id == app_id).values(shares_issued=sum(shares)))
        payment = Payment(
            id=new_id("pay"), reference=f"rev-{app_id}", user_id=OWNER, app_id=app_id, payment_type="revenue",
            status="success", amount=revenue, currency="NGN", email="owner@example.com", period="2025-06",
            paid_at=utcnow(),
        )
        session.add(payment)
        await session.flush()
        await RevenuePayment().fulfil(session, rt, [payment])  # gateway -> revenue:app, as a real charge does
    return app_id, users


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(shares=cap_tables(70), revenue=amounts, hundredths=fee_hundredths, data=st.data())
async def test_written_distribution_matches_the_arithmetic(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, shares: list[int], revenue: int, hundredths: int,
    data: st.DataObject,
) -> None:
    admin = auth("admin-1", admin=True)
    app_id, users = await _seed(client, app, admin, shares, revenue, hundredths)
    amount = data.draw(st.one_of(st.none(), st.integers(min_value=1, max_value=revenue)), label="amount")
    gross = revenue if amount is None else amount
    fee, parts = split(gross, hundredths, shares)
    expected = {user_id: (held, part) for user_id, held, part in zip(users, shares, parts, strict=True) if held}

    rt = app.state.runtime
    body = DistributionIn(period="2025-06", currency="NGN",
                          amount=None if amount is None else to_major(amount, "NGN"))
    owner = Principal(user_id=OWNER)
    async with rt.db.unit_of_work() as session:
        fees_before = await balance(session, accounts.platform_fees("NGN"))
        plan = await plan_distribution(session, rt, owner, app_id, body)
        assert (plan.amount, plan.platform_fee, plan.net_amount) == (gross, fee, gross - fee)
        assert plan.holders == [(user_id, held) for user_id, (held, _) in expected.items()]
        assert plan.parts == [part for _, part in expected.values()]
        distribution_id = (await write_distribution(session, rt, owner, plan, "2025-06")).id

    async with rt.db.unit_of_work() as session:
        distribution = await session.get(Distribution, distribution_id)
        assert distribution is not None
        assert (distribution.amount, distribution.platform_fee, distribution.net_amount) == (gross, fee, gross - fee)
        assert (distribution.allocations, distribution.total_shares) == (len(expected), sum(shares))
        rows = (await session.scalars(select(DistributionAllocation).where(
            DistributionAllocation.distribution_id == distribution_id))).all()
        assert {r.user_id: (r.shares, r.amount) for r in rows} == expected  # zero-share holders: no row
        assert sum(r.amount for r in rows) == gross - fee
        payouts = (await session.scalars(select(Payout).where(Payout.source_id == distribution_id))).all()
        assert {p.user_id: p.amount for p in payouts} == {u: part for u, (_, part) in expected.items() if part}
        assert {(p.reason, p.status, p.currency) for p in payouts} <= {("distribution", "pending", "NGN")}
        assert {r.user_id: r.payout_id for r in rows if r.amount} == {p.user_id: p.id for p in payouts}

        # the ledger: revenue drained by the gross amount, the fee to the platform, each part owed
        assert await balance(session, accounts.revenue(app_id, "NGN")) == revenue - gross
        assert await balance(session, accounts.platform_fees("NGN")) - fees_before == fee
        for user_id, (_, part) in expected.items():
            assert await balance(session, accounts.payable(user_id, "NGN")) == part
        for user_id, held in zip(users, shares, strict=True):
            if not held:
                assert await balance(session, accounts.payable(user_id, "NGN")) == 0
        checks = await run_checks(session)
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]


async def test_payouts_made_a_few_holders_at_a_time_each_go_to_their_holder(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution's payouts are made a step of holders at a time while their COPY runs (ids drawn per
    step): across steps, and past holders owed nothing, each allocation names its own holder's payout, and
    the payout ids ascend in holder order."""
    monkeypatch.setattr(distributions_service, "HOLDERS_PER_STEP", 3)
    shares = [5, 1, 1, 1, 9, 1, 1, 2, 1, 1]
    app_id, users = await _seed(client, app, auth("admin-1", admin=True), shares, 7, 0)
    _, parts = split(7, 0, shares)
    assert 0 in parts[:3] and 0 in parts[6:]  # holders owed nothing in more than one step

    rt = app.state.runtime
    async with rt.db.unit_of_work() as session:
        plan = await plan_distribution(session, rt, Principal(user_id=OWNER), app_id,
                                       DistributionIn(period="2025-06", currency="NGN"))
        distribution_id = (await write_distribution(session, rt, Principal(user_id=OWNER), plan, "2025-06")).id

    async with rt.db.unit_of_work() as session:
        allocations = (await session.scalars(select(DistributionAllocation).where(
            DistributionAllocation.distribution_id == distribution_id))).all()
        payouts = {p.id: p for p in await session.scalars(select(Payout).where(Payout.source_id == distribution_id))}
        checks = await run_checks(session)
    assert {a.user_id: a.amount for a in allocations} == dict(zip(users, parts, strict=True))
    owed = sorted((a.user_id, a.payout_id) for a in allocations if a.amount)
    assert all(a.payout_id is None for a in allocations if not a.amount)
    assert [(payouts[payout_id].user_id, payouts[payout_id].amount) for _, payout_id in owed] == [
        (user_id, part) for user_id, part in zip(users, parts, strict=True) if part]
    payout_ids = [payout_id for _, payout_id in owed]
    assert len(payouts) == len(payout_ids) and payout_ids == sorted(payout_ids)
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]
