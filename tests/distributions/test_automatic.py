"""Automatic distributions (ENABLE_AUTOMATIC_DISTRIBUTIONS): revenue paid in for an app, period and currency
is distributed by the worker exactly once, and its payouts go out; off, nothing happens by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.distributions.automatic import distribute_one, make_automatic_distributions, queue_distributions
from app.models import AuditEntry, AutomaticDistribution, Distribution, JournalEntry, Payout
from app.wiring import JOBS
from app.worker import Worker
from tests.conftest import requires_postgres
from tests.distributions.test_distributions import ADMIN, buy_shares, distribute, pay_revenue
from tests.escrow.test_full_path import register_payout_account
from tests.helpers import OWNER, put_app, settle

Auth = Callable[..., dict[str, str]]
PERIOD = "2025-07"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"enable_automatic_distributions": True}


async def counts(app: FastAPI) -> tuple[int, int, int]:
    """Distributions, queued periods, distribution journal entries."""
    async with app.state.runtime.db.unit_of_work() as session:
        return (
            await session.scalar(select(func.count()).select_from(Distribution)) or 0,
            await session.scalar(select(func.count()).select_from(AutomaticDistribution)) or 0,
            await session.scalar(select(func.count()).select_from(JournalEntry)
                                 .where(JournalEntry.kind == "distribution")) or 0,
        )


async def holders(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 3, "investor-2": 1})
    for user_id in ("investor-1", "investor-2"):
        await register_payout_account(client, auth(user_id))


async def without_automatic_job(app: FastAPI) -> None:
    """The in-process worker without the automatic distributions, so a test can run that job itself."""
    app.state.worker.jobs = tuple(job for job in JOBS if job is not make_automatic_distributions)


async def test_paid_revenue_is_distributed_once_and_its_payouts_sent(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await holders(client, app, auth)
    await pay_revenue(client, app, auth(OWNER), "1000.00", period=PERIOD)  # settles: the worker runs
    await settle(app)

    async with app.state.runtime.db.unit_of_work() as session:
        [distribution] = (await session.scalars(select(Distribution))).all()
        [queued] = (await session.scalars(select(AutomaticDistribution))).all()
        payouts = (await session.scalars(select(Payout).where(Payout.source_id == distribution.id))).all()
        [entry] = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "distribution.created"))).all()
    assert (distribution.app_id, distribution.period, distribution.amount) == ("app-1", PERIOD, 100_000)
    assert distribution.created_by == "system:automation"
    assert (queued.status, queued.distribution_id) == ("done", distribution.id)
    assert sorted((p.user_id, p.status) for p in payouts) == [("investor-1", "paid"), ("investor-2", "paid")]
    assert (entry.actor_id, entry.resource_id) == ("system:automation", distribution.id)

    # The same period paid into again, or its success applied again: still the one distribution.
    async with app.state.runtime.db.unit_of_work() as session:
        await queue_distributions(session, app.state.runtime, [("app-1", PERIOD, "NGN")] * 2)
    assert await make_automatic_distributions(app.state.runtime) == 0
    assert await counts(app) == (1, 1, 1)
    report = (await client.get("/v1/admin/integrity", headers=auth(ADMIN, admin=True))).json()
    assert report["ok"], report


async def test_a_period_distributed_by_hand_first_is_not_distributed_again(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await holders(client, app, auth)
    await without_automatic_job(app)
    await pay_revenue(client, app, auth(OWNER), "1000.00", period=PERIOD)
    assert (await distribute(client, auth(OWNER), period=PERIOD)).status_code == 201

    assert await make_automatic_distributions(app.state.runtime) == 1
    async with app.state.runtime.db.unit_of_work() as session:
        [queued] = (await session.scalars(select(AutomaticDistribution))).all()
        [made] = (await session.scalars(select(Distribution))).all()
    assert (queued.status, queued.distribution_id, made.created_by) == ("skipped", made.id, OWNER)
    assert await counts(app) == (1, 1, 1)


async def test_a_period_that_cannot_be_distributed_yet_is_tried_again_later(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await put_app(client, auth(ADMIN, admin=True))  # no shareholders yet
    await pay_revenue(client, app, auth(OWNER), "1000.00", period=PERIOD)
    await settle(app)
    async with app.state.runtime.db.unit_of_work() as session:
        [queued] = (await session.scalars(select(AutomaticDistribution))).all()
    assert (queued.status, queued.attempts, queued.distribution_id) == ("pending", 1, None)
    assert "shareholders" in (queued.last_error or "")
    assert queued.available_at > queued.updated_at  # waits for its backoff, not busy-looping
    assert await counts(app) == (0, 1, 0)


@pytest.mark.parametrize("settings_overrides", [{"enable_automatic_distributions": False}])
async def test_off_nothing_is_distributed_by_itself(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await holders(client, app, auth)
    await pay_revenue(client, app, auth(OWNER), "1000.00", period=PERIOD)
    await settle(app)
    assert await counts(app) == (0, 0, 0)


@requires_postgres
async def test_a_success_seen_twice_at_once_makes_one_distribution(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await holders(client, app, auth)
    await without_automatic_job(app)
    await pay_revenue(client, app, auth(OWNER), "1000.00", period=PERIOD)
    rt = app.state.runtime

    async def seen_again() -> None:
        async with rt.db.unit_of_work() as session:
            await queue_distributions(session, rt, [("app-1", PERIOD, "NGN")])

    await asyncio.gather(*(seen_again() for _ in range(5)))  # the success applied again, at once
    assert await counts(app) == (0, 1, 0)
    async with rt.db.unit_of_work() as session:
        queued_id = await session.scalar(select(AutomaticDistribution.id))
    done = await asyncio.gather(
        *(distribute_one(rt, queued_id) for _ in range(3)),
        *(make_automatic_distributions(rt) for _ in range(3)),
        *(Worker(rt).run_once() for _ in range(2)),
    )
    assert sum(done[:6]) <= 1  # a worker pass may have taken it first
    assert await counts(app) == (1, 1, 1)
    await settle(app)
    async with rt.db.unit_of_work() as session:
        statuses = sorted((await session.scalars(select(Payout.status))).all())
    assert statuses == ["paid", "paid"]
