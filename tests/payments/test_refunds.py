"""Shares sold out between checkout and payment: the charge is refunded through the gateway."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from app.ledger import accounts
from app.ledger.service import balance
from app.models import Refund
from app.models.base import utcnow
from tests.helpers import get_payment, invest, pay, put_app, settle
from tests.payments.refund_support import refund_seen, time_passes


async def _sell_out(client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]) -> dict:
    admin, first, second = auth("admin-1", admin=True), auth("investor-a"), auth("investor-b")
    await put_app(client, admin, total_shares=10)
    late = await invest(client, second, shares=6)  # created while shares were still available
    early = await invest(client, first, shares=10)
    await pay(client, app, early)
    await pay(client, app, late)
    return late


async def test_payment_for_sold_out_shares_is_refunded(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    late = await _sell_out(client, app, auth)
    second, admin = auth("investor-b"), auth("admin-1", admin=True)

    refunded = await get_payment(client, second, late["reference"])
    assert refunded["status"] == "refunded"
    assert refunded["refunded_amount"] == "6000.00"
    assert "sold out" in refunded["note"]
    assert (await client.get("/v1/holdings/me", headers=second)).json()["items"] == []
    assert (await client.get("/v1/escrow/transactions", headers=second)).json()["items"] == []
    sandbox_refunds = [r for r in app.state.sandbox.refunds.values() if r.transaction.reference == late["reference"]]
    assert [r.amount for r in sandbox_refunds] == [600_000]

    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.refund_in_flight("NGN")) == 0
        assert await balance(session, accounts.escrow("app-1", "NGN")) == 1_000_000
    assert (await client.get("/v1/admin/integrity", headers=admin)).json()["ok"]


async def test_refund_the_gateway_fails_is_owed_to_the_payer(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    app.state.sandbox.faults.refund_outcome_next("failed")
    late = await _sell_out(client, app, auth)
    second, admin = auth("investor-b"), auth("admin-1", admin=True)

    payment = await get_payment(client, second, late["reference"])
    assert payment["status"] == "success"  # charged, not refunded: the money is owed instead
    async with app.state.runtime.db.unit_of_work() as session:
        refund = await session.scalar(select(Refund))
        assert refund is not None and refund.status == "failed"
        assert await balance(session, accounts.refund_in_flight("NGN")) == 0
        assert await balance(session, accounts.payable("investor-b", "NGN")) == 600_000
    assert (await client.get("/v1/admin/integrity", headers=admin)).json()["ok"]


async def test_refund_answered_with_an_outage_is_not_sent_again_and_fails_without_a_record(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    app.state.sandbox.faults.fail_next(1, status=503, path_contains="/refund")  # refuses, and says 503
    late = await _sell_out(client, app, auth)
    second, admin = auth("investor-b"), auth("admin-1", admin=True)
    async with app.state.runtime.db.unit_of_work() as session:
        refund = await session.scalar(select(Refund))
        assert refund is not None and refund.status == "unknown"  # a 503 may have acted: never sent again
        refund_id = refund.id
    await time_passes(app)
    await settle(app)
    assert not app.state.sandbox.refunds
    assert (await refund_seen(client, second, refund_id))["status"] == "unknown"

    async with app.state.runtime.db.unit_of_work() as session:  # the gateway still has no record a day later
        await session.execute(update(Refund).values(sent_at=utcnow() - timedelta(days=2)))
    await time_passes(app)
    await settle(app)

    assert not app.state.sandbox.refunds
    assert (await refund_seen(client, second, refund_id))["status"] == "failed"
    assert (await get_payment(client, second, late["reference"]))["status"] == "success"
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.refund_in_flight("NGN")) == 0
        assert await balance(session, accounts.payable("investor-b", "NGN")) == 600_000  # owed instead
    assert (await client.get("/v1/admin/integrity", headers=admin)).json()["ok"]


async def test_refund_rate_limited_is_sent_when_the_limit_lifts(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    async def no_wait(_: float) -> None:
        return None

    app.state.runtime.gateway._sleep = no_wait  # the client's own wait between its 429 retries
    retries = app.state.runtime.settings.gateway_max_retries
    app.state.sandbox.faults.fail_next(retries + 1, status=429, path_contains="/refund")
    late = await _sell_out(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:
        refund = await session.scalar(select(Refund))
        assert refund is not None and refund.status == "pending" and refund.attempts == 1
    await time_passes(app)
    await settle(app)

    assert (await get_payment(client, auth("investor-b"), late["reference"]))["status"] == "refunded"
    assert [r.amount for r in app.state.sandbox.refunds.values()] == [600_000]


async def test_a_refund_is_shown_to_the_payer(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    late = await _sell_out(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:
        refund = await session.scalar(select(Refund))
        assert refund is not None

    seen = await refund_seen(client, auth("investor-b"), refund.id)
    assert seen == {
        "id": refund.id, "transaction_id": None, "escrow_transaction_id": None,
        "payment_reference": late["reference"], "amount": "6000.00", "currency": "NGN", "status": "processed",
        "created_at": seen["created_at"], "updated_at": seen["updated_at"],
    }
