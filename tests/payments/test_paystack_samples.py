"""Paystack's documented bodies fed to the service in gateway mode `test`: respx answers for
api.paystack.co with the samples of tests/fixtures/paystack (references and amounts adjusted to a
payment of ours), and the webhook samples are posted re-signed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.ledger import accounts
from app.main import create_app
from tests.helpers import get_payment, invest, mock_paystack, paystack_sample, put_app
from tests.payments.test_webhooks import deposits, encode, ledger_balance, post_signed, webhook_rows

Auth = Callable[..., dict[str, str]]
PAYSTACK = "https://api.paystack.co"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"payment_gateway_mode": "test", "reconcile_pending_after_seconds": 3600}


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """Without loopback: the gateway client calls api.paystack.co over httpx, where respx answers."""
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        yield application


@pytest.fixture
def paystack() -> Iterator[respx.MockRouter]:
    """api.paystack.co: initialize answers with the documented sample, for the reference we sent."""
    with mock_paystack(base_url=PAYSTACK, assert_all_called=False) as router:

        def initialized(request: httpx.Request) -> httpx.Response:
            sample = paystack_sample("transaction_initialize")
            sample["data"]["reference"] = json.loads(request.content)["reference"]
            return httpx.Response(200, json=sample)

        router.post("/transaction/initialize").mock(side_effect=initialized)
        yield router


def answer_verify(paystack: respx.MockRouter, reference: str, data: dict[str, Any]) -> respx.Route:
    """GET /transaction/verify/{reference} answers with `data` (a sample's, adjusted to our charge)."""
    body = {"status": True, "message": "Verification successful", "data": {**data, "reference": reference}}
    return paystack.get(f"/transaction/verify/{reference}").mock(return_value=httpx.Response(200, json=body))


async def _payment(client: httpx.AsyncClient, auth: Auth, share_price: str, currency: str = "NGN") -> dict[str, Any]:
    """One share of an app priced so that the payment is the sample's amount."""
    await put_app(client, auth("admin-1", admin=True), share_price=share_price, currency=currency)
    payment = await invest(client, auth("investor-1"), shares=1, currency=currency)
    assert payment["payment_url"] == paystack_sample("transaction_initialize")["data"]["authorization_url"]
    return payment


@pytest.mark.parametrize("sample", ["webhook_charge_success", "webhook_charge_success_recorded"])
async def test_charge_success_samples_credit_the_payment(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter, sample: str
) -> None:
    """Both samples charge NGN 100.00; the first carries `metadata: 0`, which verify's answer repeats."""
    event = paystack_sample(sample)
    payment = await _payment(client, auth, "100.00")
    reference = payment["reference"]
    verified = answer_verify(paystack, reference, event["data"])
    event["data"]["reference"] = reference

    response = await post_signed(client, app, encode(event))
    assert response.status_code == 200, response.text
    await app.state.worker.drain()

    assert verified.call_count == 1
    [row] = await webhook_rows(app)
    assert (row.status, row.attempts, row.last_error) == ("processed", 1, None)
    paid = await get_payment(client, auth("investor-1"), reference)
    assert (paid["status"], paid["flagged"], paid["amount"]) == ("success", False, "100.00")
    assert paid["gateway_fee"] == (None if event["data"]["fees"] is None else "1.50")
    assert paid["charged_amount"] == "100.00"
    [deposit] = await deposits(client, auth("admin-1", admin=True))
    assert deposit["amount"] == "100.00"
    holdings = (await client.get("/v1/holdings/me", headers=auth("investor-1"))).json()["items"]
    assert [(h["app_id"], h["shares"]) for h in holdings] == [("app-1", 1)]


async def test_verify_sample_with_fees_passed_on_credits_the_amount_asked(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    """`amount` 40333 = `requested_amount` 30050 + `fees` 10283: the customer paid the fees on top of
    the 300.50 we asked for. That is a full payment, not a mismatch."""
    payment = await _payment(client, auth, "300.50")
    answer_verify(paystack, payment["reference"], paystack_sample("transaction_verify_success")["data"])

    verified = await client.post(f"/v1/payments/{payment['reference']}/verify", headers=auth("investor-1"))

    assert verified.status_code == 200, verified.text
    paid = verified.json()
    assert (paid["status"], paid["flagged"], paid["flag_reason"]) == ("success", False, None)
    assert (paid["amount"], paid["gateway_fee"], paid["charged_amount"]) == ("300.50", "102.83", "403.33")
    assert await get_payment(client, auth("investor-1"), payment["reference"]) == paid
    [deposit] = await deposits(client, auth("admin-1", admin=True))
    assert deposit["amount"] == "300.50"
    assert await ledger_balance(app, accounts.escrow("app-1", "NGN")) == 30050


@pytest.mark.parametrize(
    "changes",
    [{"requested_amount": 30049}, {"requested_amount": 30051}, {"amount": 40332}, {"fees": 10000},
     {"currency": "GHS"}],
    ids=["asked-less", "asked-more", "paid-less-than-asked-plus-fees", "fees-disagree", "currency"],
)
async def test_verify_sample_that_does_not_add_up_is_flagged(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter, changes: dict[str, Any]
) -> None:
    payment = await _payment(client, auth, "300.50")
    answer_verify(paystack, payment["reference"], {**paystack_sample("transaction_verify_success")["data"], **changes})

    verified = await client.post(f"/v1/payments/{payment['reference']}/verify", headers=auth("investor-1"))

    assert verified.status_code == 200, verified.text
    flagged = verified.json()
    assert (flagged["status"], flagged["flagged"]) == ("pending", True)
    assert "expected 30050 NGN" in flagged["flag_reason"]
    assert (flagged["gateway_fee"], flagged["charged_amount"]) == (None, None)
    assert await deposits(client, auth("admin-1", admin=True)) == []
    assert await ledger_balance(app, accounts.escrow("app-1", "NGN")) == 0


@pytest.mark.parametrize(
    ("sample", "share_price", "currency", "status"),
    [
        ("transaction_verify_abandoned", "2000.00", "NGN", "abandoned"),
        ("transaction_verify_abandoned_ghs", "200.00", "GHS", "abandoned"),
        ("transaction_list_failed_items", "100.00", "NGN", "failed"),
    ],
)
async def test_unpaid_verify_samples_end_the_payment_without_money(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter, sample: str,
    share_price: str, currency: str, status: str,
) -> None:
    body = paystack_sample(sample)
    # The list's items have verify's shape; no verify answer for a failed charge was published.
    data = body["data"][1] if isinstance(body["data"], list) else body["data"]
    payment = await _payment(client, auth, share_price, currency)
    answer_verify(paystack, payment["reference"], data)

    verified = await client.post(f"/v1/payments/{payment['reference']}/verify", headers=auth("investor-1"))

    assert verified.status_code in (200, 402), verified.text
    ended = await get_payment(client, auth("investor-1"), payment["reference"])
    assert (ended["status"], ended["flagged"], ended["gateway_fee"]) == (status, False, None)
    assert await deposits(client, auth("admin-1", admin=True)) == []
