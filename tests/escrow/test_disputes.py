"""Disputes freeze a deposit's money until an admin (or the gateway, for chargebacks) resolves them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from app.ledger import accounts
from app.ledger.service import balance
from tests.escrow.test_full_path import approve, complete, milestone
from tests.helpers import APPROVERS, OWNER, get_payment, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
FIRST, SECOND = "investor-1", "investor-2"


async def _funded(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> dict[str, dict[str, Any]]:
    """investor-1 pays 5000.00 (5 shares), investor-2 3000.00 (3 shares); returns their payments by investor."""
    await put_app(client, auth("admin-1", admin=True))
    payments = {}
    for investor, shares in ((FIRST, 5), (SECOND, 3)):
        payments[investor] = await invest(client, auth(investor), shares=shares)
        await pay(client, app, payments[investor])
    return payments


async def _deposit(client: httpx.AsyncClient, auth: Auth, investor: str = FIRST) -> dict[str, Any]:
    listed = await client.get("/v1/escrow/transactions?type=deposit", headers=auth(investor))
    [deposit] = listed.json()["items"]
    return deposit


async def _open(client: httpx.AsyncClient, auth: Auth, deposit_id: str, amount: str | None = None,
                investor: str = FIRST) -> httpx.Response:
    body: dict[str, Any] = {"transaction_id": deposit_id, "reason": "not what was promised"}
    if amount is not None:
        body["amount"] = amount
    return await client.post("/v1/disputes", json=body, headers=auth(investor))


async def _resolve(client: httpx.AsyncClient, auth: Auth, dispute_id: str, outcome: str,
                   amount: str | None = None, *, by: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"outcome": outcome, "note": "looked into it"}
    if amount is not None:
        body["amount"] = amount
    return await client.post(f"/v1/disputes/{dispute_id}/resolve", json=body,
                             headers=by or auth("admin-1", admin=True))


async def _escrow(client: httpx.AsyncClient, auth: Auth) -> dict[str, str]:
    return (await client.get("/v1/apps/app-1/escrow", headers=auth("admin-1", admin=True))).json()["items"][0]


async def _approved_release(client: httpx.AsyncClient, auth: Auth, **body: str) -> dict[str, Any]:
    """A release of a completed 25% milestone, approved by both approvers."""
    owner = auth(OWNER)
    first = await milestone(client, owner, "25")
    await complete(client, owner, first["id"])
    created = await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"], **body})
    assert created.status_code == 201, created.text
    for approver in APPROVERS:
        decided = await approve(client, auth(approver), created.json()["id"])
        assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    return decided.json()


async def _integrity_ok(client: httpx.AsyncClient, auth: Auth) -> None:
    report = (await client.get("/v1/admin/integrity", headers=auth("admin-1", admin=True))).json()
    assert report["ok"], report


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def test_disputed_money_is_frozen(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await _funded(client, app, auth)
    deposit, other = await _deposit(client, auth), await _deposit(client, auth, SECOND)

    _error(await _open(client, auth, deposit["id"], investor=SECOND), 404, "NOT_FOUND")
    _error(await client.post("/v1/disputes", json={"transaction_id": deposit["id"], "reason": "x"},
                             headers=auth(OWNER)), 403, "UNAUTHORIZED")
    _error(await _open(client, auth, deposit["id"], "5000.01"), 409, "INSUFFICIENT_FUNDS")

    opened = await _open(client, auth, deposit["id"])
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    assert (dispute["status"], dispute["amount"], dispute["source"]) == ("open", "5000.00", "investor")
    assert (await _deposit(client, auth))["frozen"] == "5000.00"
    summary = await _escrow(client, auth)
    assert (summary["held"], summary["frozen"], summary["available"]) == ("8000.00", "5000.00", "3000.00")
    _error(await _open(client, auth, deposit["id"]), 409, "INSUFFICIENT_FUNDS")  # nothing unfrozen is left

    owner = auth(OWNER)
    first = await milestone(client, owner, "25")
    await complete(client, owner, first["id"])
    frozen = await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]})
    _error(frozen, 409, "FUNDS_FROZEN")
    alone = await client.post("/v1/escrow/releases", headers=owner,
                              json={"milestone_id": first["id"], "transaction_id": other["id"]})
    assert alone.status_code == 201, alone.text  # the other deposit is not frozen

    _error(await client.post(f"/v1/escrow/transactions/{deposit['id']}/refunds", json={"amount": "100.00"},
                             headers=auth("admin-1", admin=True)), 409, "FUNDS_FROZEN")
    _error(await client.post(f"/v1/escrow/transactions/{deposit['id']}/refunds", json={},
                             headers=auth("admin-1", admin=True)), 409, "FUNDS_FROZEN")
    assert await _deposit(client, auth) == {**deposit, "frozen": "5000.00"}

    listed = (await client.get("/v1/disputes", headers=auth(FIRST))).json()["items"]
    assert [d["id"] for d in listed] == [dispute["id"]]
    assert (await client.get("/v1/disputes", headers=auth(SECOND))).json()["items"] == []
    _error(await client.get(f"/v1/disputes/{dispute['id']}", headers=auth(SECOND)), 404, "NOT_FOUND")
    _error(await _resolve(client, auth, dispute["id"], "dismiss", by=auth(OWNER)), 403, "UNAUTHORIZED")
    _error(await _resolve(client, auth, dispute["id"], "dismiss", by=auth(FIRST)), 403, "UNAUTHORIZED")
    await _integrity_ok(client, auth)


async def test_dispute_after_approval_blocks_execution(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await _funded(client, app, auth)
    deposit = await _deposit(client, auth)
    release = await _approved_release(client, auth)  # 1250.00 from investor-1's deposit, 750.00 from investor-2's

    opened = await _open(client, auth, deposit["id"], "4500.00")  # leaves 500.00 unfrozen: less than 1250.00
    assert opened.status_code == 201, opened.text
    admin = auth("admin-1", admin=True)
    _error(await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin), 409, "FUNDS_FROZEN")
    assert (await client.get(f"/v1/escrow/releases/{release['id']}", headers=admin)).json()["status"] == "approved"
    assert (await _escrow(client, auth))["released"] == "0.00"
    assert (await client.get("/v1/payouts/me", headers=auth(OWNER))).json()["items"] == []

    resolved = await _resolve(client, auth, opened.json()["id"], "dismiss")
    assert resolved.status_code == 200, resolved.text
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    assert executed.json()["status"] == "released"
    assert (await _escrow(client, auth))["released"] == "2000.00"
    await _integrity_ok(client, auth)


async def test_resolve_with_refund(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payments = await _funded(client, app, auth)
    deposit = await _deposit(client, auth)
    dispute = (await _open(client, auth, deposit["id"], "2000.00")).json()

    resolved = await _resolve(client, auth, dispute["id"], "refund")
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["status"], body["outcome"], body["outcome_amount"]) == ("resolved", "refund", "2000.00")
    assert body["resolved_by"] == "admin-1"
    await settle(app)

    deposit = await _deposit(client, auth)
    assert (deposit["frozen"], deposit["refunded"], deposit["remaining"]) == ("0.00", "2000.00", "3000.00")
    payment = await get_payment(client, auth(FIRST), payments[FIRST]["reference"])
    assert (payment["status"], payment["refunded_amount"]) == ("partially_refunded", "2000.00")
    assert [(r.amount, r.status) for r in app.state.sandbox.refunds.values()] == [(200_000, "processed")]
    refunds = (await client.get("/v1/escrow/transactions?type=refund", headers=auth(FIRST))).json()["items"]
    assert [(r["amount"], r["status"]) for r in refunds] == [("2000.00", "processed")]
    summary = await _escrow(client, auth)
    assert (summary["held"], summary["frozen"], summary["refunded"]) == ("6000.00", "0.00", "2000.00")

    _error(await _resolve(client, auth, dispute["id"], "refund"), 409, "INVALID_STATE")
    _error(await _resolve(client, auth, dispute["id"], "dismiss"), 409, "INVALID_STATE")
    await settle(app)
    assert len(app.state.sandbox.refunds) == 1
    await _integrity_ok(client, auth)


async def test_resolve_with_full_refund_cancels_the_shares(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payments = await _funded(client, app, auth)
    deposit = await _deposit(client, auth)
    dispute = (await _open(client, auth, deposit["id"])).json()
    resolved = await _resolve(client, auth, dispute["id"], "refund")
    assert resolved.status_code == 200, resolved.text
    await settle(app)

    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["frozen"], deposit["remaining"]) == ("refunded", "0.00", "0.00")
    assert (await get_payment(client, auth(FIRST), payments[FIRST]["reference"]))["status"] == "refunded"
    assert (await client.get("/v1/holdings/me", headers=auth(FIRST))).json()["items"] == []
    assert (await client.get("/v1/apps/app-1", headers=auth(FIRST))).json()["shares_issued"] == 3
    await _integrity_ok(client, auth)


async def test_resolve_with_partial_refund(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payments = await _funded(client, app, auth)
    deposit = await _deposit(client, auth)
    dispute = (await _open(client, auth, deposit["id"], "2000.00")).json()

    _error(await _resolve(client, auth, dispute["id"], "partial_refund", "2000.01"), 422, "INVALID_AMOUNT")
    _error(await _resolve(client, auth, dispute["id"], "partial_refund"), 422, "INVALID_AMOUNT")
    assert (await _deposit(client, auth))["frozen"] == "2000.00"  # a refused resolution changes nothing

    resolved = await _resolve(client, auth, dispute["id"], "partial_refund", "500.00")
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["outcome"], resolved.json()["outcome_amount"]) == ("partial_refund", "500.00")
    await settle(app)

    deposit = await _deposit(client, auth)
    assert (deposit["frozen"], deposit["refunded"], deposit["remaining"]) == ("0.00", "500.00", "4500.00")
    payment = await get_payment(client, auth(FIRST), payments[FIRST]["reference"])
    assert (payment["status"], payment["refunded_amount"]) == ("partially_refunded", "500.00")
    summary = await _escrow(client, auth)
    assert (summary["held"], summary["frozen"], summary["available"]) == ("7500.00", "0.00", "7500.00")
    assert (await client.get("/v1/holdings/me", headers=auth(FIRST))).json()["items"][0]["shares"] == 5
    _error(await _resolve(client, auth, dispute["id"], "partial_refund", "100.00"), 409, "INVALID_STATE")
    await _integrity_ok(client, auth)


async def test_resolve_with_release(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await _funded(client, app, auth)
    deposit = await _deposit(client, auth)
    dispute = (await _open(client, auth, deposit["id"], "2000.00")).json()

    resolved = await _resolve(client, auth, dispute["id"], "release")
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["outcome"], resolved.json()["outcome_amount"]) == ("release", "2000.00")
    await settle(app)

    deposit = await _deposit(client, auth)
    assert (deposit["frozen"], deposit["released"], deposit["remaining"]) == ("0.00", "2000.00", "3000.00")
    payouts = (await client.get("/v1/payouts/me", headers=auth(OWNER))).json()["items"]
    assert [(p["amount"], p["reason"], p["status"]) for p in payouts] == [("2000.00", "release", "pending")]
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.payable(OWNER, "NGN")) == 200_000
    summary = await _escrow(client, auth)
    assert (summary["held"], summary["released"], summary["frozen"]) == ("6000.00", "2000.00", "0.00")
    assert not app.state.sandbox.refunds
    _error(await _resolve(client, auth, dispute["id"], "release"), 409, "INVALID_STATE")
    await _integrity_ok(client, auth)


async def test_resolve_with_dismiss(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await _funded(client, app, auth)
    deposit = await _deposit(client, auth)
    before = await _escrow(client, auth)
    dispute = (await _open(client, auth, deposit["id"], "2000.00")).json()

    resolved = await _resolve(client, auth, dispute["id"], "dismiss")
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["outcome"], resolved.json()["outcome_amount"]) == ("dismiss", "0.00")
    await settle(app)

    assert await _deposit(client, auth) == deposit
    assert await _escrow(client, auth) == before
    assert not app.state.sandbox.refunds
    assert (await client.get("/v1/payouts/me", headers=auth(OWNER))).json()["items"] == []
    _error(await _resolve(client, auth, dispute["id"], "refund"), 409, "INVALID_STATE")
    await _integrity_ok(client, auth)


async def _chargeback(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> tuple[str, dict[str, Any]]:
    """A paid investment the card holder disputes at the bank; returns (reference, our dispute)."""
    payments = await _funded(client, app, auth)
    reference = payments[FIRST]["reference"]
    await app.state.sandbox.open_dispute(reference)
    await settle(app)
    items = (await client.get("/v1/disputes", headers=auth("admin-1", admin=True))).json()["items"]
    [dispute] = items
    assert (dispute["source"], dispute["status"], dispute["amount"]) == ("gateway", "open", "5000.00")
    assert (await _deposit(client, auth))["frozen"] == "5000.00"
    await _integrity_ok(client, auth)
    return reference, dispute


async def test_chargeback_accepted_at_the_gateway(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    reference, dispute = await _chargeback(client, app, auth)

    await app.state.sandbox.resolve_dispute(reference, resolution="merchant-accepted")
    await settle(app)

    resolved = (await client.get(f"/v1/disputes/{dispute['id']}", headers=auth("admin-1", admin=True))).json()
    assert (resolved["status"], resolved["outcome"], resolved["outcome_amount"]) == ("resolved", "refund", "5000.00")
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["frozen"], deposit["refunded"]) == ("refunded", "0.00", "5000.00")
    payment = await get_payment(client, auth(FIRST), reference)
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", "5000.00")
    summary = await _escrow(client, auth)
    assert (summary["held"], summary["frozen"], summary["refunded"]) == ("3000.00", "0.00", "5000.00")
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.escrow("app-1", "NGN")) == 300_000
    _error(await _resolve(client, auth, dispute["id"], "dismiss"), 409, "INVALID_STATE")
    await _integrity_ok(client, auth)


async def test_chargeback_declined_at_the_gateway(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    reference, dispute = await _chargeback(client, app, auth)

    await app.state.sandbox.resolve_dispute(reference, resolution="declined")
    await settle(app)

    resolved = (await client.get(f"/v1/disputes/{dispute['id']}", headers=auth("admin-1", admin=True))).json()
    assert (resolved["status"], resolved["outcome"]) == ("resolved", "dismiss")
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["frozen"], deposit["remaining"]) == ("held", "0.00", "5000.00")
    assert (await get_payment(client, auth(FIRST), reference))["status"] == "success"
    assert (await _escrow(client, auth))["held"] == "8000.00"
    await _integrity_ok(client, auth)


async def test_gateway_resolution_after_an_admin_one_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    reference, dispute = await _chargeback(client, app, auth)
    resolved = await _resolve(client, auth, dispute["id"], "dismiss")
    assert resolved.status_code == 200, resolved.text
    deposit = await _deposit(client, auth)
    summary = await _escrow(client, auth)

    await app.state.sandbox.resolve_dispute(reference, resolution="merchant-accepted")
    await settle(app)

    after = (await client.get(f"/v1/disputes/{dispute['id']}", headers=auth("admin-1", admin=True))).json()
    assert (after["outcome"], after["resolved_by"]) == ("dismiss", "admin-1")
    assert await _deposit(client, auth) == deposit
    assert await _escrow(client, auth) == summary
    assert (await get_payment(client, auth(FIRST), reference))["status"] == "success"
    await _integrity_ok(client, auth)
