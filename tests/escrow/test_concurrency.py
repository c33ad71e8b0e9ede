"""Releases and refunds racing for the same escrowed money (PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.core.money import to_major, to_minor
from app.ledger import accounts
from app.ledger.service import balance
from app.models import EscrowTransaction
from tests.conftest import requires_postgres
from tests.escrow.test_full_path import approve, complete, milestone
from tests.helpers import invest, pay, put_app, settle

pytestmark = requires_postgres


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_enabled": False, "escrow_release_threshold": "100000000"}


async def test_fifty_concurrent_releases_and_refunds(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, owner, approver = auth("admin-1", admin=True), auth("owner-1"), auth("approver-1")
    await put_app(client, admin, approvers=["approver-1"], required_approvals=1)
    for i in range(5):
        await pay(client, app, await invest(client, auth(f"investor-{i}"), shares=10))  # 10000.00 each

    releases = []
    for _ in range(4):
        ms = await milestone(client, owner, "25")
        await complete(client, owner, ms["id"])
        async with app.state.runtime.db.unit_of_work() as session:
            deposits = (await session.scalars(select(EscrowTransaction.id).where(
                EscrowTransaction.type == "deposit"))).all()
        for deposit_id in deposits:
            created = await client.post("/v1/escrow/releases", headers=owner,
                                        json={"milestone_id": ms["id"], "transaction_id": deposit_id})
            assert created.status_code == 201, created.text
            assert (await approve(client, approver, created.json()["id"])).json()["status"] == "approved"
            releases.append(created.json()["id"])

    rng = random.Random(5)
    calls = [client.post(f"/v1/escrow/releases/{rid}/execute", headers=admin) for rid in releases]
    calls += [client.post(f"/v1/escrow/releases/{rid}/execute", headers=admin) for rid in releases[:5]]  # twice
    calls += [
        client.post(f"/v1/escrow/transactions/{rng.choice(deposits)}/refunds", headers=admin,
                    json={"amount": rng.choice(["2500.00", "4000.00", "6000.00"])})
        for _ in range(25)
    ]
    rng.shuffle(calls)
    responses = await asyncio.gather(*calls)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 201, 409}, [r.text for r in responses if r.status_code not in (200, 201, 409)]
    assert statuses.count(200) <= len(releases)
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"]["code"] in ("INSUFFICIENT_FUNDS", "INVALID_STATE")
    await settle(app)

    async with app.state.runtime.db.unit_of_work() as session:
        rows = (await session.scalars(select(EscrowTransaction).where(EscrowTransaction.type == "deposit"))).all()
        for deposit in rows:
            assert deposit.released + deposit.refunded <= deposit.amount
        escrow_balance = await balance(session, accounts.escrow("app-1", "NGN"))
        assert escrow_balance == sum(d.amount - d.released - d.refunded for d in rows)
        assert escrow_balance >= 0
    released_ok = sum(1 for r in responses if r.status_code == 200)
    listed = (await client.get("/v1/escrow/releases?status=released&limit=200", headers=admin)).json()["items"]
    assert len(listed) == released_ok
    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity


@pytest.mark.parametrize(("shares", "one_deposit", "released"), [
    ([10], False, ["5000.00"]),
    ([10], True, ["5000.00"]),
    ([10, 4], False, ["5000.00", "2000.00"]),  # the default: every deposit of the app
], ids=["default", "transaction_id", "two_deposits"])
async def test_concurrent_requests_release_a_milestone_once_per_deposit(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]],
    shares: list[int], one_deposit: bool, released: list[str],
) -> None:
    admin, owner, approver = auth("admin-1", admin=True), auth("owner-1"), auth("approver-1")
    await put_app(client, admin, approvers=["approver-1"], required_approvals=1)
    for i, count in enumerate(shares):
        await pay(client, app, await invest(client, auth(f"investor-{i}"), shares=count))
    deposits = (await client.get("/v1/escrow/transactions?type=deposit", headers=admin)).json()["items"]
    by_investor = {d["investor_id"]: d["id"] for d in deposits}
    ms = await milestone(client, owner, "50")
    await complete(client, owner, ms["id"])
    body = {"milestone_id": ms["id"], **({"transaction_id": by_investor["investor-0"]} if one_deposit else {})}

    responses = await asyncio.gather(*(client.post("/v1/escrow/releases", headers=owner, json=body)
                                       for _ in range(5)))

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409], [r.text for r in responses]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"INVALID_STATE"}
    listed = (await client.get("/v1/escrow/releases", headers=admin)).json()["items"]
    for release in listed:  # approve and execute everything there is
        assert (await approve(client, approver, release["id"])).json()["status"] == "approved"
        executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
        assert executed.status_code == 200, executed.text
    after = {d["investor_id"]: d["released"] for d in
             (await client.get("/v1/escrow/transactions?type=deposit", headers=admin)).json()["items"]}
    assert [after[f"investor-{i}"] for i in range(len(shares))] == released
    summary = (await client.get("/v1/apps/app-1/escrow", headers=admin)).json()["items"][0]
    assert summary["released"] == to_major(sum(to_minor(r, "NGN") for r in released), "NGN")


async def test_gateway_and_admin_resolving_one_chargeback_at_once_move_the_money_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin)
    payment = await invest(client, auth("investor-1"), shares=5)
    await pay(client, app, payment)
    await pay(client, app, await invest(client, auth("investor-2"), shares=3))
    await app.state.sandbox.open_dispute(payment["reference"])
    await settle(app)
    [dispute] = (await client.get("/v1/disputes", headers=admin)).json()["items"]
    # the resolution arrives and waits in the inbox; the worker takes it while two admins book it too
    await app.state.sandbox.resolve_dispute(payment["reference"], resolution="auto-accepted")

    *booked, _ = await asyncio.gather(
        *(client.post(f"/v1/disputes/{dispute['id']}/resolve", headers=admin, json={"outcome": "chargeback"})
          for _ in range(2)),
        app.state.worker.drain(),
    )
    await settle(app)

    assert sorted(r.status_code for r in booked) in ([200, 409], [409, 409]), [r.text for r in booked]
    assert all(r.json()["error"]["code"] == "INVALID_STATE" for r in booked if r.status_code == 409)

    resolved = (await client.get(f"/v1/disputes/{dispute['id']}", headers=admin)).json()
    assert resolved["status"] == "resolved" and resolved["outcome_amount"] == "5000.00"
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.escrow("app-1", "NGN")) == 300_000
        charged_back = (await session.scalars(select(EscrowTransaction).where(
            EscrowTransaction.type == "refund", EscrowTransaction.status == "processed"))).all()
        assert [tx.amount for tx in charged_back] == [500_000]
    deposit = (await client.get(f"/v1/escrow/transactions/{dispute['transaction_id']}", headers=admin)).json()
    assert (deposit["frozen"], deposit["refunded"]) == ("0.00", "5000.00")
    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity
