"""Payout accounts and payouts as Paystack transfers: timeouts, outages, failures, retries, never paid twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.ledger import accounts
from app.ledger.service import balance
from app.models import JournalEntry, LedgerAccount, Payout, PayoutAccount, Posting
from app.payouts.service import reconcile_payouts, send_pending_payouts
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.helpers import APPROVERS, OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
RELEASED = 125_000  # 25% of a 5000.00 investment


async def _release(client: httpx.AsyncClient, app: FastAPI, auth: Auth, *, account: bool = True) -> dict[str, Any]:
    """A 1250.00 release executed for the owner; returns the owner's payout, not yet sent."""
    admin, owner = auth("admin-1", admin=True), auth(OWNER)
    await put_app(client, admin)
    await pay(client, app, await invest(client, auth("investor-1"), shares=5))
    if account:
        await register_payout_account(client, owner)
    first = await milestone(client, owner, "25")
    await complete(client, owner, first["id"])
    release = (await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]})).json()
    for approver in APPROVERS:
        await approve(client, auth(approver), release["id"])
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    return await _payout(client, auth)


async def _payout(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    [payout] = (await client.get("/v1/payouts/me", headers=auth(OWNER))).json()["items"]
    return payout


async def _payable(app: FastAPI) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await balance(session, accounts.payable(OWNER, "NGN"))


async def _retry(client: httpx.AsyncClient, auth: Auth, payout_id: str) -> httpx.Response:
    return await client.post(f"/v1/payouts/{payout_id}/retry", headers=auth("admin-1", admin=True))


async def _books_ok(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    """Integrity holds, no reference was paid twice, and the ledger's payout outflow is exactly the paid payouts."""
    report = (await client.get("/v1/admin/integrity", headers=auth("admin-1", admin=True))).json()
    assert report["ok"], report
    sandbox = app.state.sandbox
    async with app.state.runtime.db.unit_of_work() as session:
        payouts = (await session.scalars(select(Payout))).all()
        paid_out = await session.scalar(
            select(func.coalesce(func.sum(Posting.amount), 0))
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(JournalEntry.kind == "payout_paid", LedgerAccount.name == accounts.gateway("NGN"))
        )
        in_flight = await balance(session, accounts.payout_in_flight("NGN"))
    succeeded = [t for t in sandbox.transfers.values() if t.status == "success"]
    assert len({t.reference for t in succeeded}) == len(succeeded)
    for payout in payouts:
        transfer = sandbox.transfers.get(payout.reference)
        if payout.status == "paid":
            assert transfer is not None and transfer.status == "success" and transfer.amount == payout.amount
        elif payout.status in ("failed", "reversed", "pending"):
            assert transfer is None or transfer.status != "success", payout.status
    paid = sum(p.amount for p in payouts if p.status == "paid")
    assert paid_out == paid == sum(t.amount for t in succeeded)
    assert in_flight == sum(p.amount for p in payouts if p.status == "processing")


async def test_payout_account_shows_only_the_last_four_digits(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    owner = auth(OWNER)
    missing = await client.get("/v1/payout-accounts/me", headers=owner)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"

    registered = await client.put("/v1/payout-accounts/me", headers=owner,
                                  json={"bank_code": "057", "account_number": "0123456789", "currency": "NGN"})
    assert registered.status_code == 200, registered.text
    account = registered.json()
    assert account["account_number_last4"] == "6789"
    assert account["recipient_code"].startswith("RCP_") and account["account_name"]
    assert "0123456789" not in registered.text
    shown = await client.get("/v1/payout-accounts/me", headers=owner)
    assert shown.json() == account and "0123456789" not in shown.text

    async with app.state.runtime.db.unit_of_work() as session:
        row = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == OWNER))
        assert row is not None
        assert "0123456789" not in row.account_number_encrypted
        assert app.state.runtime.cipher.decrypt(row.account_number_encrypted) == "0123456789"
    assert app.state.sandbox.recipients[account["recipient_code"]].account_number == "0123456789"

    # the same account again keeps the same Paystack recipient
    again = await client.put("/v1/payout-accounts/me", headers=owner,
                             json={"bank_code": "057", "account_number": "0123456789", "currency": "NGN"})
    assert again.status_code == 200 and again.json()["recipient_code"] == account["recipient_code"]


@pytest.mark.parametrize(
    ("bank_code", "account_number"),
    [("999", "0123456789"), ("057", "012345678"), ("057", "01234567890")],
)
async def test_an_account_the_gateway_cannot_resolve_is_refused(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, bank_code: str, account_number: str
) -> None:
    refused = await client.put("/v1/payout-accounts/me", headers=auth(OWNER),
                               json={"bank_code": bank_code, "account_number": account_number, "currency": "NGN"})
    # the caller's details are wrong, not the gateway: 422 INVALID_BANK_ACCOUNT (API.md), never a 5xx
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "INVALID_BANK_ACCOUNT"
    assert error["details"]["gateway_status"] == 422
    assert "resolve" in error["details"]["gateway_message"].lower()
    assert (await client.get("/v1/payout-accounts/me", headers=auth(OWNER))).status_code == 404
    assert not app.state.sandbox.recipients


async def test_a_currency_the_bank_does_not_pay_out_in_is_refused(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    refused = await client.put("/v1/payout-accounts/me", headers=auth(OWNER),
                               json={"bank_code": "057", "account_number": "0123456789", "currency": "USD"})
    assert refused.status_code == 422, refused.text  # was a 502 GATEWAY_ERROR (found by schemathesis)
    assert refused.json()["error"]["code"] == "INVALID_BANK_ACCOUNT"
    assert (await client.get("/v1/payout-accounts/me", headers=auth(OWNER))).status_code == 404


async def test_a_malformed_account_number_is_a_validation_error(client: httpx.AsyncClient, auth: Auth) -> None:
    refused = await client.put("/v1/payout-accounts/me", headers=auth(OWNER),
                               json={"bank_code": "057", "account_number": "01234abcde", "currency": "NGN"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_payout_paid(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth)
    assert (payout["status"], payout["amount"], payout["reason"]) == ("pending", "1250.00", "release")
    assert await _payable(app) == RELEASED
    await settle(app)

    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 1)
    assert await _payable(app) == 0
    _error(await _retry(client, auth, paid["id"]), 409, "INVALID_STATE")
    retry_as_owner = await client.post(f"/v1/payouts/{paid['id']}/retry", headers=auth(OWNER))
    assert retry_as_owner.status_code == 403
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"gateway_timeout_seconds": 0.5}])
async def test_transfer_timeout_is_not_a_failure(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth)
    # The transfer is made but its answer comes after the client's timeout, and so does the answer to the
    # client's own retry (which Paystack refuses: the reference is taken).
    app.state.sandbox.faults.timeout_next(2, path_contains="/transfer", delay=1.0)

    await send_pending_payouts(app.state.runtime)
    unknown = await _payout(client, auth)
    assert unknown["status"] == "processing", unknown
    assert await _payable(app) == 0  # in flight, not owed again
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")

    await app.state.sandbox.wait_idle()  # the sandbox settles the transfer; its webhook waits in the inbox
    assert app.state.sandbox.transfers[payout["reference"]].status == "success"
    assert await reconcile_payouts(app.state.runtime, older_than_seconds=0) == 1
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"]) == ("paid", payout["reference"])

    await settle(app)  # the late transfer.success webhook changes nothing
    assert (await _payout(client, auth))["status"] == "paid"
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"gateway_timeout_seconds": 0.5}])
async def test_transfer_retried_after_a_timeout_is_not_a_failure(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    # Only the first answer is late: the client's retry hears "reference already exists", which must not
    # count as a failure (the first transfer went through).
    app.state.sandbox.faults.timeout_next(1, path_contains="/transfer", delay=1.0)

    await send_pending_payouts(app.state.runtime)
    assert (await _payout(client, auth))["status"] in ("processing", "paid")
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 1)
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


async def test_transfer_outage_is_reconciled_and_resent_under_the_same_reference(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.fail_next(2, status=500, path_contains="/transfer")  # the call and its retry

    await send_pending_payouts(app.state.runtime)
    unknown = await _payout(client, auth)
    assert unknown["status"] == "processing", unknown
    assert payout["reference"] not in app.state.sandbox.transfers
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")

    # the transfer never reached Paystack: verify says 404, the reconciler sends it again
    await reconcile_payouts(app.state.runtime, older_than_seconds=0)
    assert app.state.sandbox.transfers[payout["reference"]].amount == RELEASED
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"]) == ("paid", payout["reference"])
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


async def test_conclusive_failure_returns_the_money_and_retry_pays_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.transfer_outcome_next("failed")
    await settle(app)

    failed = await _payout(client, auth)
    assert failed["status"] == "failed" and failed["last_error"]
    assert await _payable(app) == RELEASED  # owed again
    await _books_ok(client, app, auth)

    retried = await _retry(client, auth, payout["id"])
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["reference"]) == ("pending", payout["reference"])
    await settle(app)

    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 2)
    assert await _payable(app) == 0
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    await _books_ok(client, app, auth)


async def test_reversed_transfer_returns_the_money(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.transfer_outcome_next("reversed")
    await settle(app)

    reversed_ = await _payout(client, auth)
    assert reversed_["status"] == "reversed"
    assert await _payable(app) == RELEASED
    await _books_ok(client, app, auth)

    assert (await _retry(client, auth, payout["id"])).status_code == 200
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


async def test_payout_waits_for_an_account(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth, account=False)
    assert payout["awaiting_payout_account"] is True
    await settle(app)
    assert (await _payout(client, auth))["status"] == "pending"
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")
    assert not app.state.sandbox.transfers

    await register_payout_account(client, auth(OWNER))
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    await _books_ok(client, app, auth)


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
