"""Payouts in every market through the sandbox: a payout account of each kind Paystack pays out to (NGN and GHS
bank accounts, Ghana's mobile money, Kenya's banks, M-PESA and M-PESA tills, South Africa's validated
accounts), then a release and a distribution in that currency paid out to it; details the gateway refuses are
the caller's error; USD, which Paystack does not pay out, stays payable and visible."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.ledger import accounts
from app.ledger.service import balance
from app.models import PayoutAccount
from tests.escrow.test_full_path import approve, complete, milestone
from tests.helpers import APPROVERS, OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
ADMIN = "admin-1"
INVESTORS = ("investor-1", "investor-2")
ID_NUMBER = "8001015009087"

pytestmark = pytest.mark.parametrize("settings_overrides", [{"enable_multi_currency": True}])


def account(currency: str, kind: str, bank_code: str, number: str, **extra: Any) -> dict[str, Any]:
    return {"currency": currency, "type": kind, "bank_code": bank_code, "account_number": number, **extra}


def south_african(number: str, **extra: Any) -> dict[str, Any]:
    holder = {"account_name": "Ann Bron", "account_type": "personal", "document_type": "identityNumber",
              "document_number": ID_NUMBER}
    return account("ZAR", "basa", "632005", number, **{**holder, **extra})


# Market -> a valid account of that kind for the n-th person (the number differs per person).
MARKETS: dict[str, Callable[[int], dict[str, Any]]] = {
    "NGN nuban": lambda n: account("NGN", "nuban", "057", f"012345678{n}"),
    "GHS ghipss": lambda n: account("GHS", "ghipss", "040", f"102030405{n}"),
    "GHS MTN mobile money": lambda n: account("GHS", "mobile_money", "MTN", f"055123498{n}",
                                              account_name="Abina Nana"),
    "KES M-PESA": lambda n: account("KES", "mobile_money", "MPESA", f"075123498{n}", account_name="Andrew Jones"),
    "KES M-PESA till": lambda n: account("KES", "mobile_money_business", "MPTILL", f"24724{n}",
                                         account_name="Till Transfer Example"),
    "KES kepss": lambda n: account("KES", "kepss", "01", f"110023456{n}", account_name="Wanjiru Kamau"),
    "ZAR basa": lambda n: south_african(f"012345678{n}"),
}
EXPECTED_TYPE = {market: body(0)["type"] for market, body in MARKETS.items()}


async def add_account(client: httpx.AsyncClient, who: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/payout-accounts", headers=who, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def release_paid_out(client: httpx.AsyncClient, app: FastAPI, auth: Auth, currency: str) -> dict[str, Any]:
    """A 50% milestone of app-1 released (an approver and an admin approve: without a threshold for the
    currency, a release needs an admin) and executed; the owner's payout after settling."""
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    ms = await milestone(client, owner, "50")
    await complete(client, owner, ms["id"])
    release = (await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": ms["id"]})).json()
    for who in (auth(APPROVERS[0]), admin):
        assert (await approve(client, who, release["id"])).status_code == 200
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    await settle(app)
    [payout] = (await client.get("/v1/payouts/me", headers=owner)).json()["items"]
    assert payout["currency"] == currency
    return payout


async def revenue_distributed(client: httpx.AsyncClient, app: FastAPI, auth: Auth, currency: str) -> dict[str, Any]:
    owner = auth(OWNER)
    body = {"payment_type": "revenue", "app_id": "app-1", "email": "owner@example.com", "currency": currency,
            "amount": "1000.00", "period": "2025-03"}
    created = await client.post("/v1/payments", json=body, headers=owner)
    assert created.status_code == 201, created.text
    await pay(client, app, created.json())
    distributed = await client.post("/v1/apps/app-1/distributions", headers=owner,
                                    json={"period": "2025-03", "currency": currency})
    assert distributed.status_code == 201, distributed.text
    await settle(app)
    return distributed.json()


@pytest.mark.parametrize("market", list(MARKETS))
async def test_a_release_and_a_distribution_paid_out_in_every_market(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, market: str
) -> None:
    body = MARKETS[market]
    currency = body(0)["currency"]
    admin = auth(ADMIN, admin=True)
    await put_app(client, admin, currency=currency, share_price="100.00")
    people = [OWNER, *INVESTORS]
    for n, user_id in enumerate(people):
        registered = await add_account(client, auth(user_id), body(n))
        assert (registered["type"], registered["currency"], registered["is_default"]) == (
            EXPECTED_TYPE[market], currency, True)
        assert registered["last4"] == body(n)["account_number"][-4:]
        assert body(n)["account_number"] not in str(registered)
        recipient = app.state.sandbox.recipients[registered["recipient_code"]]
        assert (recipient.type, recipient.currency, recipient.bank.code) == (
            body(n)["type"], currency, body(n)["bank_code"])
    for user_id, shares in zip(INVESTORS, (3, 2), strict=True):
        await pay(client, app, await invest(client, auth(user_id), shares=shares, currency=currency))

    payout = await release_paid_out(client, app, auth, currency)
    assert (payout["status"], payout["amount"]) == ("paid", "250.00")  # 50% of 500.00
    transfer = app.state.sandbox.transfers[payout["reference"]]
    assert (transfer.status, transfer.currency, transfer.amount) == ("success", currency, 25000)

    distribution = await revenue_distributed(client, app, auth, currency)
    allocations = (await client.get(f"/v1/distributions/{distribution['id']}/allocations",
                                    headers=admin)).json()["items"]
    assert sorted(a["user_id"] for a in allocations) == sorted(INVESTORS)
    assert all(a["payout_status"] == "paid" for a in allocations), allocations
    for user_id in INVESTORS:
        paid = (await client.get("/v1/payouts/me", headers=auth(user_id))).json()["items"]
        assert [(p["reason"], p["status"], p["currency"]) for p in paid] == [("distribution", "paid", currency)]
        async with app.state.runtime.db.unit_of_work() as session:
            assert await balance(session, accounts.payable(user_id, currency)) == 0
    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity


BAD_DETAILS = [
    pytest.param(account("NGN", "nuban", "057", "0000000000"), id="NGN failing account"),
    pytest.param(account("NGN", "nuban", "999", "0123456789"), id="NGN unknown bank"),
    pytest.param(account("GHS", "ghipss", "040", "0000000000"), id="GHS bank failing account"),
    pytest.param(account("GHS", "ghipss", "040", "12345"), id="GHS bank short number"),
    pytest.param(account("GHS", "mobile_money", "MTN", "0000000000", account_name="Abina Nana"),
                 id="GHS MTN failing number"),
    pytest.param(account("GHS", "mobile_money", "XXX", "0551234987", account_name="Abina Nana"),
                 id="GHS unknown operator"),
    pytest.param(account("KES", "mobile_money", "MPESA", "0000000000", account_name="Andrew Jones"),
                 id="KES M-PESA failing number"),
    pytest.param(account("KES", "kepss", "99", "1100234567", account_name="Wanjiru Kamau"),
                 id="KES unknown bank"),
    pytest.param(south_african("0000000000"), id="ZAR failing account"),
    pytest.param(south_african("0123456789", document_number="12345"), id="ZAR wrong document"),
    pytest.param(south_african("0123456789", document_type="businessRegistrationNumber",
                               document_number="2019/123456/07"), id="ZAR business document, personal account"),
    pytest.param(account("ZAR", "basa", "999999", "0123456789", account_name="Ann Bron", account_type="personal",
                         document_type="identityNumber", document_number=ID_NUMBER), id="ZAR unknown bank"),
]


@pytest.mark.parametrize("body", BAD_DETAILS)
async def test_details_the_gateway_refuses_are_the_callers_error_in_every_market(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        refused = await client.post("/v1/payout-accounts", headers=auth(OWNER), json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "INVALID_BANK_ACCOUNT"
    assert error["details"]["gateway_message"]
    assert body["account_number"] not in refused.text
    assert ID_NUMBER not in refused.text and ID_NUMBER not in caplog.text
    assert (await client.get("/v1/payout-accounts/me", headers=auth(OWNER))).json() == {"items": []}


@pytest.mark.parametrize(("body", "code"), [
    (account("GHS", "kepss", "01", "1100234567", account_name="A B"), "VALIDATION_ERROR"),
    (account("NGN", "basa", "632005", "0123456789"), "VALIDATION_ERROR"),
    (account("KES", "mobile_money", "MPESA", "0751234987"), "VALIDATION_ERROR"),  # no account_name
    (account("KES", "mobile_money_business", "MPPAYBILL", "247247", account_name="A B"), "VALIDATION_ERROR"),
    (account("ZAR", "basa", "632005", "0123456789", account_name="Ann Bron"), "VALIDATION_ERROR"),  # no document
    (account("NGN", "nuban", "057", "0123456789", document_type="passportNumber"), "VALIDATION_ERROR"),
    (account("USD", "nuban", "057", "0123456789"), "CURRENCY_NOT_SUPPORTED"),
    ({"currency": "USD", "bank_code": "057", "account_number": "0123456789"}, "CURRENCY_NOT_SUPPORTED"),
], ids=["kepss in GHS", "basa in NGN", "M-PESA without a name", "paybill", "ZAR without document",
        "document outside ZAR", "USD nuban", "USD"])
async def test_a_kind_that_does_not_belong_to_the_currency_is_refused_before_the_gateway(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, body: dict[str, Any], code: str
) -> None:
    refused = await client.post("/v1/payout-accounts", headers=auth(OWNER), json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == code
    assert not app.state.sandbox.recipients


async def test_usd_owed_stays_payable_and_visible(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    """Paystack pays out no USD for this integration: the owner cannot register a USD account, and the
    released money waits, visible, as payable."""
    await put_app(client, auth(ADMIN, admin=True), currency="USD", share_price="100.00")
    await pay(client, app, await invest(client, auth(INVESTORS[0]), shares=5, currency="USD"))
    refused = await client.post("/v1/payout-accounts", headers=auth(OWNER),
                                json=account("USD", "nuban", "057", "0123456789"))
    assert refused.json()["error"]["code"] == "CURRENCY_NOT_SUPPORTED"

    payout = await release_paid_out(client, app, auth, "USD")
    assert (payout["status"], payout["awaiting_payout_account"], payout["amount"]) == (
        "awaiting_payout_account", True, "250.00")
    waiting = (await client.get("/v1/payouts/me", headers=auth(OWNER),
                                params={"status": "awaiting_payout_account"})).json()["items"]
    assert [p["id"] for p in waiting] == [payout["id"]]
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.payable(OWNER, "USD")) == 25000
    assert not app.state.sandbox.transfers


async def test_the_south_african_document_is_stored_encrypted_and_never_shown(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        registered = await add_account(client, auth(OWNER), MARKETS["ZAR basa"](0))
        listed = await client.get("/v1/payout-accounts/me", headers=auth(OWNER))
    assert (registered["account_type"], registered["document_type"]) == ("personal", "identityNumber")
    assert ID_NUMBER not in str(registered) and ID_NUMBER not in listed.text and ID_NUMBER not in caplog.text
    async with app.state.runtime.db.unit_of_work() as session:
        row = await session.scalar(select(PayoutAccount).where(PayoutAccount.id == registered["id"]))
    assert row is not None and row.document_number_encrypted and ID_NUMBER not in row.document_number_encrypted
    assert app.state.runtime.cipher.decrypt(row.document_number_encrypted) == ID_NUMBER
