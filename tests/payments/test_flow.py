"""The whole sandbox flow over HTTP: create an investment, pay at the checkout page, money lands in escrow."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.core.security import issue_token
from app.main import create_app
from tests.conftest import BASE_URL
from tests.helpers import checkout, get_payment, invest, mock_paystack, pay, paystack_sample, put_app


async def test_successful_investment_lands_in_escrow_and_issues_shares(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)

    payment = await invest(client, investor, shares=5)
    assert payment["status"] == "pending"
    assert payment["amount"] == "5000.00"
    assert payment["currency"] == "NGN"
    assert payment["payment_url"].startswith("http://testserver/sandbox/paystack/checkout/")

    page = await client.get(payment["payment_url"])
    assert page.status_code == 200
    assert "5,000.00" in page.text or "5000.00" in page.text
    assert "NGN" in page.text

    await pay(client, app, payment, "success")

    paid = await get_payment(client, investor, payment["reference"])
    assert paid["status"] == "success"
    assert paid["paid_at"] is not None

    deposits = (await client.get("/v1/escrow/transactions", headers=investor)).json()["items"]
    assert len(deposits) == 1
    deposit = deposits[0]
    assert deposit["type"] == "deposit"
    assert deposit["amount"] == "5000.00"
    assert deposit["remaining"] == "5000.00"
    assert deposit["gateway_reference"] == payment["reference"]
    one = await client.get(f"/v1/escrow/transactions/{deposit['id']}", headers=investor)
    assert one.json()["investor_id"] == "investor-1"

    holdings = (await client.get("/v1/holdings/me", headers=investor)).json()["items"]
    assert [(h["app_id"], h["shares"], h["reserved_shares"]) for h in holdings] == [("app-1", 5, 0)]
    app_view = (await client.get("/v1/apps/app-1", headers=investor)).json()
    assert app_view["shares_issued"] == 5 and app_view["shares_available"] == 995

    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity


@pytest.mark.parametrize("outcome", ["failed", "abandoned"])
async def test_unsuccessful_checkout_credits_nothing(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]], outcome: str
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=2)
    await pay(client, app, payment, outcome)

    # no webhook exists for a failed charge: the client's verify call learns the outcome, as 402
    verified = await client.post(f"/v1/payments/{payment['reference']}/verify", headers=investor)
    assert verified.status_code == 402, verified.text
    error = verified.json()["error"]
    assert error["code"] == "PAYMENT_FAILED"
    assert (error["details"]["reference"], error["details"]["status"]) == (payment["reference"], outcome)
    assert error["details"]["gateway_response"]
    assert (await get_payment(client, investor, payment["reference"]))["status"] == outcome
    assert (await client.get("/v1/escrow/transactions", headers=investor)).json()["items"] == []
    assert (await client.get("/v1/holdings/me", headers=investor)).json()["items"] == []
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_issued"] == 0


async def test_a_declined_charge_retried_on_the_same_checkout_is_credited_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=2)
    verify = f"/v1/payments/{payment['reference']}/verify"

    assert (await checkout(client, payment, "failed")).status_code == 200  # declined
    assert (await client.post(verify, headers=investor)).status_code == 402
    page = await client.get(payment["payment_url"])
    assert 'value="success"' in page.text  # the same checkout offers another attempt

    await pay(client, app, payment, "success")
    for _ in range(2):  # the webhook and the client's verify both apply it: credited once
        verified = await client.post(verify, headers=investor)
        assert verified.status_code == 200, verified.text
        assert verified.json()["status"] == "success"
    deposits = (await client.get("/v1/escrow/transactions", headers=investor)).json()["items"]
    assert [(d["type"], d["amount"]) for d in deposits] == [("deposit", "2000.00")]
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_issued"] == 2
    assert (await client.get("/v1/admin/integrity", headers=admin)).json()["ok"]


async def test_checkout_redirects_to_callback_url(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, callback_url="https://frontend.example/return")
    response = await checkout(client, payment, "success")
    assert response.status_code == 303
    assert response.headers["location"].startswith("https://frontend.example/return")
    assert payment["reference"] in response.headers["location"]


async def test_client_verify_credits_once_even_before_the_webhook(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=3)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)

    first = await client.post(f"/v1/payments/{payment['reference']}/verify", headers=investor)
    second = await client.post(f"/v1/payments/{payment['reference']}/verify", headers=investor)
    assert first.json()["status"] == second.json()["status"] == "success"
    deposits = (await client.get("/v1/escrow/transactions", headers=investor)).json()["items"]
    assert len(deposits) == 1
    holdings = (await client.get("/v1/holdings/me", headers=investor)).json()["items"]
    assert holdings[0]["shares"] == 3


async def test_fees_passed_on_to_the_customer_still_credit_the_amount_asked(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    """With the integration charging its fees to customers, verify's `amount` is the payment plus the fee
    (`requested_amount` is the payment): a full payment, credited once, with the fee recorded."""
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    app.state.sandbox.customer_pays_fees = True

    payment = await invest(client, investor, shares=5)
    await pay(client, app, payment, "success")

    paid = await get_payment(client, investor, payment["reference"])
    # NGN pricing: 1.5% + NGN 100 from NGN 2,500 = 175.00 on 5000.00
    assert (paid["status"], paid["flagged"], paid["flag_reason"]) == ("success", False, None)
    assert (paid["amount"], paid["gateway_fee"], paid["charged_amount"]) == ("5000.00", "175.00", "5175.00")
    [deposit] = (await client.get("/v1/escrow/transactions", headers=investor)).json()["items"]
    assert deposit["amount"] == "5000.00"
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_issued"] == 5
    assert (await client.get("/v1/admin/integrity", headers=admin)).json()["ok"]


async def test_fees_borne_by_the_merchant_are_recorded_too(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=5)
    assert (payment["gateway_fee"], payment["charged_amount"]) == (None, None)

    await pay(client, app, payment, "success")

    paid = await get_payment(client, investor, payment["reference"])
    assert (paid["status"], paid["gateway_fee"], paid["charged_amount"]) == ("success", "175.00", "5000.00")


async def test_http_callback_url_is_accepted_in_the_sandbox(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    payment = await invest(client, auth("investor-1"), callback_url="http://localhost:3000/return")
    assert payment["callback_url"] == "http://localhost:3000/return"


@pytest.mark.parametrize("callback_url", ["http://frontend.example/return", "HTTP://frontend.example/return"])
async def test_http_callback_url_is_refused_outside_the_sandbox_before_the_gateway(
    make_settings: Callable[..., Settings], callback_url: str
) -> None:
    """The contract: callback_url is https, or any URL in sandbox mode. Paystack (respx) must not be called."""
    settings = make_settings(payment_gateway_mode="test", paystack_secret_key="sk_test_callback",
                             jwt_secret="a-test-mode-secret-of-at-least-32-bytes-0123")

    def initialized(request: httpx.Request) -> httpx.Response:
        answer = paystack_sample("transaction_initialize")
        answer["data"]["reference"] = json.loads(request.content)["reference"]
        return httpx.Response(200, json=answer)

    def bearer(user_id: str, roles: list[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(settings, user_id, roles)}"}

    application = create_app(settings)
    with mock_paystack(base_url="https://api.paystack.co", assert_all_called=False) as paystack:
        initialize = paystack.post("/transaction/initialize").mock(side_effect=initialized)
        async with (
            LifespanManager(application),
            httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url=BASE_URL) as http,
        ):
            await put_app(http, bearer("admin-1", ["admin"]))
            investor = bearer("investor-1", [])
            body: dict[str, Any] = {"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com",
                                    "currency": "NGN", "shares": 1}
            refused = await http.post("/v1/payments", json={**body, "callback_url": callback_url}, headers=investor)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
            assert "callback_url" in json.dumps(refused.json()["error"]["details"])
            assert not initialize.called
            assert (await http.get("/v1/payments", headers=investor)).json()["items"] == []

            accepted = await http.post("/v1/payments", json={**body, "callback_url": "https://frontend.example/r"},
                                       headers=investor)
            assert accepted.status_code == 201, accepted.text
            assert initialize.call_count == 1
            assert json.loads(initialize.calls.last.request.content)["callback_url"] == "https://frontend.example/r"
