"""Admin refunds out of a deposit, back to the payer through the gateway (sandbox)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.escrow.service import EscrowService
from app.ledger import accounts
from app.ledger.service import balance
from app.models import EscrowTransaction, Refund
from app.shares.service import reserve_shares
from tests.helpers import get_payment, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
INVESTOR = "investor-1"


async def _funded(client: httpx.AsyncClient, app: FastAPI, auth: Auth, shares: int = 5) -> tuple[dict, dict]:
    """An app with one paid investment; returns (payment, deposit)."""
    await put_app(client, auth("admin-1", admin=True))
    payment = await invest(client, auth(INVESTOR), shares=shares)
    await pay(client, app, payment)
    return payment, await _deposit(client, auth)


async def _deposit(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    listed = await client.get("/v1/escrow/transactions?type=deposit", headers=auth(INVESTOR))
    assert listed.status_code == 200, listed.text
    [deposit] = listed.json()["items"]
    return deposit


async def _refund(client: httpx.AsyncClient, auth: Auth, deposit_id: str, amount: str | None = None,
                  **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"reason": "investor asked"}
    if amount is not None:
        body["amount"] = amount
    return await client.post(f"/v1/escrow/transactions/{deposit_id}/refunds", json=body,
                             headers={**auth("admin-1", admin=True), **headers})


async def _holdings(client: httpx.AsyncClient, auth: Auth) -> list[tuple[int, int]]:
    items = (await client.get("/v1/holdings/me", headers=auth(INVESTOR))).json()["items"]
    return [(h["shares"], h["reserved_shares"]) for h in items]


async def _shares_issued(client: httpx.AsyncClient, auth: Auth) -> int:
    return (await client.get("/v1/apps/app-1", headers=auth(INVESTOR))).json()["shares_issued"]


async def _escrow(client: httpx.AsyncClient, auth: Auth) -> dict[str, str]:
    return (await client.get("/v1/apps/app-1/escrow", headers=auth("admin-1", admin=True))).json()["items"][0]


async def _integrity_ok(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    report = (await client.get("/v1/admin/integrity", headers=auth("admin-1", admin=True))).json()
    assert report["ok"], report
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.refund_in_flight("NGN")) == 0


async def test_partial_refund_then_the_rest(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payment, deposit = await _funded(client, app, auth)

    created = await _refund(client, auth, deposit["id"], "2000.00")
    assert created.status_code == 201, created.text
    refund = created.json()
    assert (refund["status"], refund["amount"], refund["transaction_id"]) == ("pending", "2000.00", deposit["id"])
    # the money leaves escrow when the refund is asked for
    assert (await _escrow(client, auth))["held"] == "3000.00"

    await settle(app)
    async with app.state.runtime.db.unit_of_work() as session:
        row = await session.get(Refund, refund["id"])
        assert row is not None and row.status == "processed"
        # the answer describes the rows written
        record = await session.get(EscrowTransaction, refund["escrow_transaction_id"])
        assert record is not None and (record.type, record.refund_id, record.amount) == ("refund", row.id, 200_000)
        assert datetime.fromisoformat(refund["created_at"]) == row.created_at
    assert refund["payment_reference"] == payment["reference"]
    refunds = (await client.get("/v1/escrow/transactions?type=refund", headers=auth(INVESTOR))).json()["items"]
    assert [(r["amount"], r["status"]) for r in refunds] == [("2000.00", "processed")]
    seen = await get_payment(client, auth(INVESTOR), payment["reference"])
    assert (seen["status"], seen["refunded_amount"]) == ("partially_refunded", "2000.00")
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["refunded"], deposit["remaining"]) == ("held", "2000.00", "3000.00")
    assert await _holdings(client, auth) == [(5, 0)]  # a partial refund leaves shares as they are
    assert await _shares_issued(client, auth) == 5
    await _integrity_ok(client, app, auth)

    rest = await _refund(client, auth, deposit["id"])  # default: all that remains
    assert rest.status_code == 201, rest.text
    assert (rest.json()["amount"], rest.json()["status"]) == ("3000.00", "pending")
    assert await _holdings(client, auth) == [(5, 5)]  # reserved until the gateway settles the refund
    await settle(app)

    seen = await get_payment(client, auth(INVESTOR), payment["reference"])
    assert (seen["status"], seen["refunded_amount"]) == ("refunded", "5000.00")
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["refunded"], deposit["remaining"]) == ("refunded", "5000.00", "0.00")
    assert await _holdings(client, auth) == []
    assert await _shares_issued(client, auth) == 0
    sandbox_refunds = [r for r in app.state.sandbox.refunds.values() if r.transaction.reference == payment["reference"]]
    assert sorted(r.amount for r in sandbox_refunds) == [200_000, 300_000]
    assert (await _escrow(client, auth))["held"] == "0.00"

    nothing_left = await _refund(client, auth, deposit["id"])
    assert nothing_left.status_code == 409 and nothing_left.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    await _integrity_ok(client, app, auth)


async def test_full_refund_of_an_untouched_deposit_cancels_its_shares(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payment, deposit = await _funded(client, app, auth, shares=3)
    assert await _shares_issued(client, auth) == 3

    created = await _refund(client, auth, deposit["id"])
    assert created.status_code == 201, created.text
    assert created.json()["amount"] == "3000.00"
    await settle(app)

    assert (await get_payment(client, auth(INVESTOR), payment["reference"]))["status"] == "refunded"
    assert await _holdings(client, auth) == []
    assert await _shares_issued(client, auth) == 0
    await _integrity_ok(client, app, auth)


async def test_refund_larger_than_what_remains_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payment, deposit = await _funded(client, app, auth)
    before = await _escrow(client, auth)

    too_much = await _refund(client, auth, deposit["id"], "5000.01")
    assert too_much.status_code == 409, too_much.text
    error = too_much.json()["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS" and error["details"]["remaining"] == "5000.00"
    zero = await _refund(client, auth, deposit["id"], "0")
    assert zero.status_code == 422 and zero.json()["error"]["code"] in ("INVALID_AMOUNT", "VALIDATION_ERROR")

    await settle(app)
    assert await _escrow(client, auth) == before
    assert await _deposit(client, auth) == deposit
    assert (await get_payment(client, auth(INVESTOR), payment["reference"]))["status"] == "success"
    assert await _holdings(client, auth) == [(5, 0)]
    assert not app.state.sandbox.refunds
    async with app.state.runtime.db.unit_of_work() as session:
        assert (await session.scalars(select(Refund))).all() == []
    await _integrity_ok(client, app, auth)


async def test_refund_the_gateway_fails_goes_back_to_escrow(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payment, deposit = await _funded(client, app, auth)
    app.state.sandbox.faults.refund_outcome_next("failed")

    created = await _refund(client, auth, deposit["id"])
    assert created.status_code == 201, created.text
    assert (await _escrow(client, auth))["held"] == "0.00"
    assert await _holdings(client, auth) == [(5, 5)]
    await settle(app)

    assert (await _escrow(client, auth))["held"] == "5000.00"
    deposit = await _deposit(client, auth)
    assert (deposit["status"], deposit["refunded"], deposit["remaining"]) == ("held", "0.00", "5000.00")
    async with app.state.runtime.db.unit_of_work() as session:
        row = await session.get(Refund, created.json()["id"])
        assert row is not None and row.status == "failed"
        assert await balance(session, accounts.escrow("app-1", "NGN")) == 500_000
    refunds = (await client.get("/v1/escrow/transactions?type=refund", headers=auth(INVESTOR))).json()["items"]
    assert [r["status"] for r in refunds] == ["failed"]
    assert await _holdings(client, auth) == [(5, 0)]
    assert await _shares_issued(client, auth) == 5
    assert (await get_payment(client, auth(INVESTOR), payment["reference"]))["status"] == "success"
    await _integrity_ok(client, app, auth)

    # the money is back in escrow and can be refunded again
    again = await _refund(client, auth, deposit["id"])
    assert again.status_code == 201, again.text
    await settle(app)
    assert (await get_payment(client, auth(INVESTOR), payment["reference"]))["status"] == "refunded"
    assert await _holdings(client, auth) == []
    await _integrity_ok(client, app, auth)


async def test_full_refund_needs_the_shares_unreserved(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payment, deposit = await _funded(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:
        await reserve_shares(session, app_id="app-1", user_id=INVESTOR, shares=1)  # e.g. offered for sale
    before = await _escrow(client, auth)

    refused = await _refund(client, auth, deposit["id"])
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "INVALID_STATE"
    assert await _escrow(client, auth) == before
    assert await _holdings(client, auth) == [(5, 1)]
    assert await _deposit(client, auth) == deposit

    # a partial refund leaves shares alone, so it is allowed
    partial = await _refund(client, auth, deposit["id"], "1000.00")
    assert partial.status_code == 201, partial.text
    await settle(app)
    assert (await get_payment(client, auth(INVESTOR), payment["reference"]))["status"] == "partially_refunded"
    assert await _holdings(client, auth) == [(5, 1)]
    await _integrity_ok(client, app, auth)


async def test_refund_idempotency_key_replays(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payment, deposit = await _funded(client, app, auth)

    first = await _refund(client, auth, deposit["id"], "1500.00", **{"Idempotency-Key": "refund-1"})
    assert first.status_code == 201, first.text
    replay = await _refund(client, auth, deposit["id"], "1500.00", **{"Idempotency-Key": "refund-1"})
    assert replay.status_code == 201, replay.text
    assert replay.json() == first.json()
    assert replay.headers.get("Idempotent-Replayed") == "true"
    conflict = await _refund(client, auth, deposit["id"], "1000.00", **{"Idempotency-Key": "refund-1"})
    assert conflict.status_code == 422 and conflict.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    await settle(app)

    deposit = await _deposit(client, auth)
    assert (deposit["refunded"], deposit["remaining"]) == ("1500.00", "3500.00")
    assert [r.amount for r in app.state.sandbox.refunds.values()] == [150_000]
    seen = await get_payment(client, auth(INVESTOR), payment["reference"])
    assert (seen["status"], seen["refunded_amount"]) == ("partially_refunded", "1500.00")
    await _integrity_ok(client, app, auth)


async def test_process_refund_through_the_python_interface(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payment, deposit = await _funded(client, app, auth)
    runtime = app.state.runtime

    async with runtime.db.unit_of_work() as session:
        transaction = await session.get(EscrowTransaction, deposit["id"])
        assert transaction is not None
        refund = await EscrowService(session, runtime).process_refund(transaction, amount=Decimal("1250.00"))
        assert isinstance(refund, Refund) and refund.amount == 125_000 and refund.status == "pending"
    await settle(app)

    async with runtime.db.unit_of_work() as session:
        row = await session.get(Refund, refund.id)
        assert row is not None and row.status == "processed"
    deposit = await _deposit(client, auth)
    assert (deposit["refunded"], deposit["remaining"]) == ("1250.00", "3750.00")
    assert (await get_payment(client, auth(INVESTOR), payment["reference"]))["status"] == "partially_refunded"
    await _integrity_ok(client, app, auth)


async def test_refund_the_gateway_needs_attention_for_stays_in_flight(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payment, deposit = await _funded(client, app, auth)
    app.state.sandbox.faults.refund_outcome_next("needs-attention")

    created = await _refund(client, auth, deposit["id"], "2000.00")
    assert created.status_code == 201, created.text
    await settle(app)

    seen = (await client.get(f"/v1/refunds/{created.json()['id']}", headers=auth("admin-1", admin=True))).json()
    assert seen["status"] == "needs_attention"
    refunds = (await client.get("/v1/escrow/transactions?type=refund", headers=auth(INVESTOR))).json()["items"]
    assert [r["status"] for r in refunds] == ["pending"]  # the escrow contract: pending until it ends
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.refund_in_flight("NGN")) == 200_000
    assert (await get_payment(client, auth(INVESTOR), payment["reference"]))["status"] == "success"
    assert (await client.get("/v1/admin/integrity", headers=auth("admin-1", admin=True))).json()["ok"]
