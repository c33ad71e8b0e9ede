"""Disputes freeze a deposit's money until an admin (or the gateway, for chargebacks) resolves them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.core import metrics
from app.gateway.signature import sign
from app.ledger import accounts
from app.ledger.service import balance
from app.models import WebhookEvent
from tests.escrow.test_full_path import approve, complete, milestone
from tests.helpers import APPROVERS, OWNER, get_payment, invest, pay, paystack_sample, put_app, settle

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
    assert [(p["amount"], p["reason"], p["status"]) for p in payouts] == [
        ("2000.00", "release", "awaiting_payout_account")]
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


@pytest.mark.parametrize("resolution", ["merchant-accepted", "auto-accepted"])
async def test_chargeback_accepted_by_the_merchant_or_automatically_is_lost(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, resolution: Literal["merchant-accepted", "auto-accepted"]
) -> None:
    """Unanswered in time, Paystack accepts a chargeback itself: the money is gone just the same."""
    reference, dispute = await _chargeback(client, app, auth)

    await app.state.sandbox.resolve_dispute(reference, resolution=resolution)
    await settle(app)

    await _assert_charged_back(client, app, auth, dispute["id"], reference)
    resolved = await _dispute(client, auth, dispute["id"])
    assert (resolved["gateway_resolution"], resolved["flagged"]) == (resolution, False)


# Paystack's documented dispute bodies, adjusted to a payment of ours and posted re-signed


async def _post_event(client: httpx.AsyncClient, app: FastAPI, event: dict[str, Any]) -> None:
    body = json.dumps(event, separators=(",", ":")).encode()
    secret = app.state.runtime.settings.paystack_secret_key.get_secret_value()
    headers = {"content-type": "application/json", "x-paystack-signature": sign(body, secret)}
    response = await client.post("/v1/webhooks/paystack", content=body, headers=headers)
    assert response.status_code == 200, response.text
    await settle(app)


def _dispute_event(name: str, reference: str, amount: int = 500_000, **changes: Any) -> dict[str, Any]:
    """The sample, about investor-1's charge of 5000.00; both samples name the dispute 358950."""
    event = paystack_sample(name)
    data = event["data"]
    data.update(id=358950, refund_amount=amount)
    data["transaction"].update(reference=reference, amount=500_000, requested_amount=500_000)
    data.update(changes)
    return event


async def _dispute(client: httpx.AsyncClient, auth: Auth, dispute_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/disputes/{dispute_id}", headers=auth("admin-1", admin=True))
    assert response.status_code == 200, response.text
    return response.json()


async def _sample_chargeback(client: httpx.AsyncClient, app: FastAPI, auth: Auth,
                             **changes: Any) -> tuple[str, dict[str, Any]]:
    """investor-1's 5000.00 disputed by Paystack's charge.dispute.create sample (`transaction_reference` null,
    the reference in `transaction.reference`)."""
    payments = await _funded(client, app, auth)
    reference = payments[FIRST]["reference"]
    await _post_event(client, app, _dispute_event("webhook_charge_dispute_create", reference, **changes))
    [dispute] = (await client.get("/v1/disputes", headers=auth("admin-1", admin=True))).json()["items"]
    assert (dispute["source"], dispute["status"]) == ("gateway", "open")
    return reference, dispute


async def _assert_charged_back(client: httpx.AsyncClient, app: FastAPI, auth: Auth, dispute_id: str,
                               reference: str) -> None:
    """investor-1's 5000.00 went back to the card holder: out of escrow, back to the gateway, never releasable."""
    resolved = await _dispute(client, auth, dispute_id)
    assert (resolved["status"], resolved["outcome"], resolved["outcome_amount"]) == ("resolved", "refund", "5000.00")
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["frozen"], deposit["refunded"], deposit["remaining"]) == (
        "refunded", "0.00", "5000.00", "0.00")
    payment = await get_payment(client, auth(FIRST), reference)
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", "5000.00")
    summary = await _escrow(client, auth)
    assert (summary["held"], summary["frozen"], summary["available"], summary["refunded"]) == (
        "3000.00", "0.00", "3000.00", "5000.00")
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.escrow("app-1", "NGN")) == 300_000
        # the 5000.00 left the books through the gateway account it came in by
        assert await balance(session, accounts.gateway("NGN")) == -300_000
    assert (await client.get("/v1/holdings/me", headers=auth(FIRST))).json()["items"] == []
    owner = auth(OWNER)
    first = await milestone(client, owner, "100")
    await complete(client, owner, first["id"])
    refused = await client.post("/v1/escrow/releases", headers=owner,
                                json={"milestone_id": first["id"], "transaction_id": deposit["id"]})
    _error(refused, 409, "INSUFFICIENT_FUNDS")
    everything = await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]})
    assert everything.status_code == 201, everything.text
    assert everything.json()["amount"] == "3000.00"  # investor-2's deposit only
    await _integrity_ok(client, auth)


async def test_paystack_auto_accepted_chargeback_sample_moves_the_money_out_of_escrow(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    """The documented charge.dispute.resolve: `resolution` auto-accepted, the charge `reversed`."""
    reference, dispute = await _sample_chargeback(client, app, auth)
    assert dispute["amount"] == "5000.00" and dispute["reason"] == "chargeback (chargeback)"
    assert (await _deposit(client, auth))["frozen"] == "5000.00"

    await _post_event(client, app, _dispute_event("webhook_charge_dispute_resolve", reference))

    await _assert_charged_back(client, app, auth, dispute["id"], reference)
    resolved = await _dispute(client, auth, dispute["id"])
    assert (resolved["gateway_resolution"], resolved["flagged"], resolved["resolved_by"]) == (
        "auto-accepted", False, "paystack")


async def test_paystack_declined_chargeback_unfreezes_the_money(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    reference, dispute = await _sample_chargeback(client, app, auth)
    declined = _dispute_event("webhook_charge_dispute_resolve", reference, resolution="declined")
    declined["data"]["transaction"]["status"] = "success"

    await _post_event(client, app, declined)

    resolved = await _dispute(client, auth, dispute["id"])
    assert (resolved["status"], resolved["outcome"], resolved["flagged"]) == ("resolved", "dismiss", False)
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["frozen"], deposit["remaining"]) == ("held", "0.00", "5000.00")
    assert (await _escrow(client, auth))["available"] == "8000.00"
    assert (await get_payment(client, auth(FIRST), reference))["status"] == "success"
    await _integrity_ok(client, auth)


@pytest.mark.parametrize(
    ("changes", "transaction_status", "label", "reason_part"),
    [
        ({"resolution": "auto-declined"}, "success", "resolution", "unknown resolution auto-declined"),
        ({"resolution": None}, "reversed", "resolution", "unknown resolution None"),
        ({"resolution": ["merchant-accepted"]}, "reversed", "resolution", "unknown resolution"),
        ({"resolution": "declined"}, "reversed", "contradiction", "contradicted by the charge's status reversed"),
        ({}, "failed", "contradiction", "contradicted by the charge's status failed"),
        ({"currency": "GHS"}, "reversed", "currency", "resolution in GHS"),
        ({"refund_amount": 600_000}, "reversed", "amount", "took back 600000, 500000 was frozen"),
        ({"refund_amount": "all of it"}, "reversed", "amount", "refund_amount is not an amount"),
    ],
    ids=["unknown", "missing", "not-a-string", "declined-but-reversed", "accepted-but-failed", "currency",
         "more-than-frozen", "amount-unreadable"],
)
async def test_unclear_chargeback_resolution_keeps_the_money_frozen_and_flags_it(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, changes: dict[str, Any], transaction_status: str,
    label: str, reason_part: str,
) -> None:
    reference, dispute = await _sample_chargeback(client, app, auth)
    flagged_before = _flag_count(label)
    unclear = _dispute_event("webhook_charge_dispute_resolve", reference, **changes)
    unclear["data"]["transaction"]["status"] = transaction_status

    await _post_event(client, app, unclear)

    flagged = await _dispute(client, auth, dispute["id"])
    assert (flagged["status"], flagged["outcome"], flagged["flagged"]) == ("open", None, True)
    assert reason_part in flagged["flag_reason"]
    assert _flag_count(label) == flagged_before + 1
    deposit = await _deposit(client, auth)
    assert (deposit["frozen"], deposit["refunded"], deposit["remaining"]) == ("5000.00", "0.00", "5000.00")
    assert (await _escrow(client, auth))["available"] == "3000.00"
    assert (await get_payment(client, auth(FIRST), reference))["status"] == "success"
    owner = auth(OWNER)
    first = await milestone(client, owner, "100")
    await complete(client, owner, first["id"])
    frozen = await client.post("/v1/escrow/releases", headers=owner,
                               json={"milestone_id": first["id"], "transaction_id": deposit["id"]})
    _error(frozen, 409, "FUNDS_FROZEN")
    await _integrity_ok(client, auth)

    # an admin who learns from Paystack that the bank took the money books the chargeback
    booked = await _resolve(client, auth, dispute["id"], "chargeback")
    assert booked.status_code == 200, booked.text
    assert (booked.json()["status"], booked.json()["outcome"], booked.json()["outcome_amount"]) == (
        "resolved", "chargeback", "5000.00")
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["frozen"], deposit["refunded"]) == ("refunded", "0.00", "5000.00")
    assert (await get_payment(client, auth(FIRST), reference))["status"] == "refunded"
    await _integrity_ok(client, auth)


def _flag_count(label: str) -> float:
    return metrics.CHARGEBACKS_FLAGGED.labels(reason=label)._value.get()


async def test_partly_accepted_chargeback_takes_only_what_the_bank_took(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    reference, dispute = await _sample_chargeback(client, app, auth)

    await _post_event(client, app, _dispute_event("webhook_charge_dispute_resolve", reference, amount=200_000,
                                                  resolution="merchant-accepted"))

    resolved = await _dispute(client, auth, dispute["id"])
    assert (resolved["status"], resolved["outcome"], resolved["outcome_amount"]) == (
        "resolved", "partial_refund", "2000.00")
    deposit = await _deposit(client, auth)
    assert (deposit["frozen"], deposit["refunded"], deposit["remaining"]) == ("0.00", "2000.00", "3000.00")
    assert (await get_payment(client, auth(FIRST), reference))["status"] == "partially_refunded"
    assert (await _escrow(client, auth))["available"] == "6000.00"
    await _integrity_ok(client, auth)


async def test_chargeback_whose_amount_is_unreadable_freezes_the_whole_deposit_and_is_flagged(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    _, dispute = await _sample_chargeback(client, app, auth, refund_amount={"value": 5800})
    assert (dispute["amount"], dispute["flagged"]) == ("5000.00", True)
    assert "refund_amount is not an amount" in dispute["flag_reason"]
    assert (await _deposit(client, auth))["frozen"] == "5000.00"


@pytest.mark.parametrize(
    "changes",
    [{"id": None}, {"id": {"nested": 1}}, {"id": "x" * 100}, {"transaction": {"reference": "pay-" + "a" * 100_000}},
     {"transaction": "pay-x"}],
    ids=["no-id", "id-object", "id-too-long", "reference-100k", "transaction-not-object"],
)
async def test_malformed_chargeback_is_ignored_after_one_attempt(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, changes: dict[str, Any]
) -> None:
    payments = await _funded(client, app, auth)
    event = _dispute_event("webhook_charge_dispute_create", payments[FIRST]["reference"])
    event["data"].update(changes)

    await _post_event(client, app, event)

    async with app.state.runtime.db.unit_of_work() as session:
        [row] = (await session.scalars(select(WebhookEvent).where(WebhookEvent.event == "charge.dispute.create"))).all()
    assert (row.status, row.attempts) == ("ignored", 1)
    assert row.last_error and row.last_error.startswith("malformed:")
    assert (await client.get("/v1/disputes", headers=auth("admin-1", admin=True))).json()["items"] == []
    assert (await _deposit(client, auth))["frozen"] == "0.00"


async def test_only_a_chargeback_is_resolved_as_one(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await _funded(client, app, auth)
    dispute = (await _open(client, auth, (await _deposit(client, auth))["id"], "2000.00")).json()
    _error(await _resolve(client, auth, dispute["id"], "chargeback"), 409, "INVALID_STATE")
    assert (await _deposit(client, auth))["frozen"] == "2000.00"
