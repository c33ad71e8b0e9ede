"""Charges verified together are applied in one transaction: shares issued in order while they last,
each investor's holding credited once with its total, the rest refunded, nothing applied twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.ledger import accounts
from app.ledger.service import balance
from app.models import EscrowTransaction, Refund
from app.payments.service import apply_verifications
from tests.helpers import get_payment, invest, put_app

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"reconcile_pending_after_seconds": 3600}  # only this test applies the charges


async def test_one_batch_issues_shares_in_order_and_refunds_what_no_longer_fits(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin, total_shares=10)
    buyers = [("investor-1", 4), ("investor-2", 4), ("investor-1", 2), ("investor-3", 3)]
    payments = [await invest(client, auth(user), shares=shares) for user, shares in buyers]
    rt = app.state.runtime
    verdicts = []
    for payment in payments:
        app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
        verdicts.append((payment["reference"], await rt.gateway.verify_transaction(payment["reference"])))

    for _ in range(2):  # the second time, every charge is already applied: nothing moves
        async with rt.db.unit_of_work() as session:
            applied = await apply_verifications(session, rt, verdicts)
        assert [p.reference for p in applied if p is not None] == [p["reference"] for p in payments]

    assert (await client.get("/v1/apps/app-1", headers=admin)).json()["shares_issued"] == 10
    for user, expected in (("investor-1", [6]), ("investor-2", [4]), ("investor-3", [])):
        items = (await client.get("/v1/holdings/me", headers=auth(user))).json()["items"]
        assert [h["shares"] for h in items] == expected, user
    late = await get_payment(client, auth("investor-3"), payments[3]["reference"])
    assert late["status"] == "success" and "sold out" in late["note"]
    async with rt.db.unit_of_work() as session:
        deposits = (await session.scalars(select(EscrowTransaction.amount).where(
            EscrowTransaction.type == "deposit").order_by(EscrowTransaction.id))).all()
        refunds = await session.scalar(select(func.count()).select_from(Refund))
        escrow = await balance(session, accounts.escrow("app-1", "NGN"))
    assert sorted(deposits) == [200000, 400000, 400000]
    assert refunds == 1
    assert escrow == 1000000
    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity
