"""ENABLE_MULTI_CURRENCY: apps and payments in another currency than DEFAULT_CURRENCY."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.conftest import BASE_URL
from tests.helpers import get_payment, invest, pay, put_app

Auth = Callable[..., dict[str, str]]
MULTI_ON = pytest.mark.parametrize("settings_overrides", [{"enable_multi_currency": True}])
MULTI_OFF = pytest.mark.parametrize(
    "settings_overrides", [{"enable_multi_currency": False, "default_currency": "NGN"}]
)


def app_body(**overrides: Any) -> dict[str, Any]:
    return {"name": "Accra Market", "owner_id": "owner-1", "currency": "GHS", "share_price": "1.00",
            "total_shares": 1000, **overrides}


def assert_currency_not_supported(response: httpx.Response, currency: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "CURRENCY_NOT_SUPPORTED"
    assert error["details"]["currency"] == currency
    return error


@MULTI_ON
async def test_ghs_investment_end_to_end(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    created = await put_app(client, admin, "app-ghs", currency="GHS", share_price="1.00")
    assert (created["currency"], created["share_price"]) == ("GHS", "1.00")
    await put_app(client, admin, "app-ngn")  # an NGN app alongside

    payment = await invest(client, investor, "app-ghs", shares=50, currency="GHS")
    assert (payment["amount"], payment["currency"], payment["status"]) == ("50.00", "GHS", "pending")
    assert app.state.sandbox.transactions[payment["reference"]].currency == "GHS"
    assert app.state.sandbox.transactions[payment["reference"]].amount == 5000  # pesewas

    page = await client.get(payment["payment_url"])
    assert page.status_code == 200 and "GHS" in page.text

    await pay(client, app, payment, "success")
    paid = await get_payment(client, investor, payment["reference"])
    assert (paid["status"], paid["amount"], paid["currency"]) == ("success", "50.00", "GHS")

    deposits = (await client.get("/v1/escrow/transactions", headers=investor)).json()["items"]
    assert [(d["type"], d["amount"], d["currency"], d["app_id"]) for d in deposits] == [
        ("deposit", "50.00", "GHS", "app-ghs")
    ]
    holdings = (await client.get("/v1/holdings/me", headers=investor)).json()["items"]
    assert [(h["app_id"], h["shares"]) for h in holdings] == [("app-ghs", 50)]
    assert (await client.get("/v1/apps/app-ghs", headers=investor)).json()["shares_available"] == 950
    # nothing landed on the NGN side
    assert (await client.get("/v1/apps/app-ngn", headers=investor)).json()["shares_issued"] == 0

    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity


@MULTI_ON
async def test_amounts_follow_the_apps_currency(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True), "app-ghs", currency="GHS", share_price="0.50")
    investor = auth("investor-1")
    by_amount = await invest(client, investor, "app-ghs", shares=None, amount="2.50", currency="GHS")
    assert (by_amount["amount"], by_amount["currency"]) == ("2.50", "GHS")
    # the NGN currency for a GHS app is still refused
    body = {"payment_type": "investment", "app_id": "app-ghs", "email": "investor@example.com",
            "currency": "NGN", "shares": 5}
    error = assert_currency_not_supported(await client.post("/v1/payments", json=body, headers=investor), "NGN")
    assert error["details"]["supported"] == ["GHS"]


@MULTI_OFF
async def test_ghs_app_refused_without_multi_currency(client: httpx.AsyncClient, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    error = assert_currency_not_supported(
        await client.put("/v1/apps/app-ghs", json=app_body(), headers=admin), "GHS"
    )
    assert error["details"]["supported"] == ["NGN"]
    assert (await client.get("/v1/apps/app-ghs", headers=admin)).status_code == 404
    # the default currency is still fine
    ngn = await client.put("/v1/apps/app-ngn", json=app_body(currency="NGN", share_price="1000.00"), headers=admin)
    assert ngn.status_code == 200, ngn.text


@MULTI_OFF
async def test_ghs_payment_refused_without_multi_currency(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))  # NGN
    investor = auth("investor-1")
    body = {"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com",
            "currency": "GHS", "shares": 1}
    error = assert_currency_not_supported(await client.post("/v1/payments", json=body, headers=investor), "GHS")
    assert error["details"]["supported"] == ["NGN"]
    assert (await client.get("/v1/payments", headers=investor)).json()["items"] == []
    assert (await invest(client, investor, shares=1))["currency"] == "NGN"


async def test_turning_multi_currency_off_stops_payments_to_existing_ghs_apps(
    make_settings: Callable[..., Settings], auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    body = {"payment_type": "investment", "app_id": "app-ghs", "email": "investor@example.com",
            "currency": "GHS", "shares": 10}

    for enabled, expected in ((True, 201), (False, 422)):  # the same database, restarted with the flag off
        application = create_app(make_settings(enable_multi_currency=enabled), loopback=True)
        async with (
            LifespanManager(application, startup_timeout=30, shutdown_timeout=30),
            httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url=BASE_URL) as http,
        ):
            if enabled:
                await put_app(http, admin, "app-ghs", currency="GHS", share_price="1.00")
            response = await http.post("/v1/payments", json=body, headers=investor)
            assert response.status_code == expected, response.text
            if not enabled:
                assert_currency_not_supported(response, "GHS")
                assert len((await http.get("/v1/payments", headers=investor)).json()["items"]) == 1
