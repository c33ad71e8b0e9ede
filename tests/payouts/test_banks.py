"""GET /v1/banks: the gateway's banks and mobile-money operators per currency and type, cached per process
with a refresh, for any signed-in user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import respx
from fastapi import FastAPI

from app.gateway.client import PaystackClient
from tests.helpers import paystack_sample

Auth = Callable[..., dict[str, str]]


async def banks(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> httpx.Response:
    return await client.get("/v1/banks", params=params, headers=headers)


async def test_banks_and_operators_of_a_currency_with_their_types(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await banks(client, auth("investor-1"), currency="GHS")
    assert response.status_code == 200, response.text
    assert sorted((b["code"], b["type"], b["currency"]) for b in response.json()["items"]) == [
        ("040", "ghipss", "GHS"), ("130", "ghipss", "GHS"), ("ATL", "mobile_money", "GHS"),
        ("MTN", "mobile_money", "GHS"), ("VOD", "mobile_money", "GHS")]

    operators = await banks(client, auth("investor-1"), currency="ghs", type="mobile_money")
    assert [(b["code"], b["name"]) for b in operators.json()["items"]] == [
        ("MTN", "MTN"), ("VOD", "Vodafone"), ("ATL", "AirtelTigo")]


async def test_the_list_is_read_once_until_a_refresh(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    calls = 0
    gateway: PaystackClient = app.state.runtime.gateway
    list_banks = gateway.list_banks

    async def counted(currency: str, bank_type: str | None = None) -> Any:
        nonlocal calls
        calls += 1
        return await list_banks(currency, bank_type)

    gateway.list_banks = counted  # type: ignore[method-assign]
    investor = auth("investor-1")
    for _ in range(3):
        assert (await banks(client, investor, currency="NGN")).status_code == 200
    assert calls == 1
    assert (await banks(client, investor, currency="NGN", refresh="true")).status_code == 200
    assert calls == 2
    assert (await banks(client, investor, currency="KES")).status_code == 200  # another currency: its own entry
    assert calls == 3


async def test_bad_requests_are_the_callers(client: httpx.AsyncClient, auth: Auth) -> None:
    assert (await banks(client, {}, currency="NGN")).status_code == 401
    unknown = await banks(client, auth("investor-1"), currency="XYZ")
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["code"] == "CURRENCY_NOT_SUPPORTED"
    for params in ({}, {"currency": "NGNN"}, {"currency": "NGN", "type": "Mobile Money"}):
        refused = await banks(client, auth("investor-1"), **params)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "VALIDATION_ERROR", refused.text


async def test_paystacks_list_passes_the_type_and_keeps_it() -> None:
    async with respx.mock(using="httpx", base_url="https://api.paystack.co", assert_all_called=True) as api:
        body = paystack_sample("bank_list_ghs_mobile_money")
        route = api.get("/bank").mock(return_value=httpx.Response(200, json=body))
        client = PaystackClient(base_url="https://api.paystack.co", secret_key="sk_test_banks")
        try:
            listed = await client.list_banks("GHS", "mobile_money")
        finally:
            await client.aclose()
    assert route.calls[0].request.url.params["type"] == "mobile_money"
    assert [(b.code, b.type) for b in listed] == [("ATL", "mobile_money"), ("MTN", "mobile_money"),
                                                   ("VOD", "mobile_money")]
