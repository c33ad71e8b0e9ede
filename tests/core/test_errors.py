"""Every error the service emits leaves as `{"error": {"code", "message", "details"}}` with the contract's status."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.conftest import BASE_URL
from tests.helpers import invest, put_app

Auth = Callable[..., dict[str, str]]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is exactly the error envelope with this status and code; returns `error`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def investment(**fields: Any) -> dict[str, Any]:
    return {"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com",
            "currency": "NGN", **fields}


async def payment_count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/v1/payments", headers=headers)
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


# Framework errors


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/nothing-here", "/v1/payments/ref/unknown-action"])
async def test_unknown_route_is_404_not_found(client: httpx.AsyncClient, auth: Auth, path: str) -> None:
    assert_error(await client.get(path, headers=auth("investor-1")), 404, "NOT_FOUND")


async def test_wrong_method_is_405(client: httpx.AsyncClient, auth: Auth) -> None:
    error = assert_error(await client.delete("/v1/payments", headers=auth("investor-1")), 405, "METHOD_NOT_ALLOWED")
    assert "not allowed" in error["message"].lower()


async def test_malformed_json_with_a_valid_token_is_a_validation_error(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    response = await client.post(
        "/v1/payments", content=b'{"payment_type": "investment", "app_id": ',
        headers={**auth("investor-1"), "Content-Type": "application/json"},
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"]["fields"], error


async def test_unknown_field_is_a_validation_error_naming_the_field(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.post(
        "/v1/payments", json=investment(shares=1, status="success", is_admin=True), headers=auth("investor-1")
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    named = {field["loc"][-1] for field in error["details"]["fields"]}
    assert {"status", "is_admin"} <= named, error
    assert all(field["message"] for field in error["details"]["fields"])


async def test_missing_and_invalid_fields_are_listed(client: httpx.AsyncClient, auth: Auth) -> None:
    body = investment(shares=1, email="not-an-email")
    del body["app_id"]
    error = assert_error(await client.post("/v1/payments", json=body, headers=auth("investor-1")),
                         422, "VALIDATION_ERROR")
    named = {field["loc"][-1] for field in error["details"]["fields"]}
    assert {"app_id", "email"} <= named, error


# Money


@pytest.mark.parametrize(
    "raw_amount",
    [
        '"1.001"',  # more decimals than NGN has
        '"-5"',
        "-5",
        '"1e3"',
        "1e20",  # a JSON number in exponent form that is not written back exactly
        '"abc"',
        '""',
        '"NaN"',
        '"Infinity"',
        '"1,000.00"',
        "true",
        '"0"',
        '"0.00"',
        "12345678901234567.89",  # a JSON number that lost digits on the way through a float
        '"\\uff11\\uff10\\uff10\\uff10"',  # fullwidth digits: were 1000.00
        '"\\u0661\\u0660\\u0660\\u0660.\\u0660\\u0660"',  # Arabic-Indic digits: were 1000.00
    ],
)
async def test_bad_amounts_are_invalid_amount(
    client: httpx.AsyncClient, auth: Auth, raw_amount: str
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    content = (
        '{"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com", '
        f'"currency": "NGN", "amount": {raw_amount}}}'
    )
    response = await client.post(
        "/v1/payments", content=content.encode(), headers={**investor, "Content-Type": "application/json"}
    )
    assert_error(response, 422, "INVALID_AMOUNT")
    assert await payment_count(client, investor) == 0


async def test_periods_and_percentages_take_ascii_digits_only(client: httpx.AsyncClient, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin)
    revenue = {"payment_type": "revenue", "app_id": "app-1", "email": "owner@example.com", "currency": "NGN",
               "amount": "1000.00", "period": "\uff12\uff10\uff12\uff16-05"}
    error = assert_error(await client.post("/v1/payments", json=revenue, headers=admin), 422, "VALIDATION_ERROR")
    assert [field["loc"] for field in error["details"]["fields"]] == [["body", "period"]]
    distribution = {"period": "\u0662\u0660\u0662\u0666-05", "currency": "NGN"}
    assert_error(await client.post("/v1/apps/app-1/distributions", json=distribution, headers=admin),
                 422, "VALIDATION_ERROR")
    milestone = {"title": "Beta", "release_percentage": "\uff12\uff15"}
    assert_error(await client.post("/v1/apps/app-1/milestones", json=milestone, headers=admin),
                 422, "VALIDATION_ERROR")
    fee = {"name": "Farm Tools", "owner_id": "owner-1", "currency": "NGN", "share_price": "1000.00",
           "total_shares": 1000, "platform_fee_percentage": "\u0662.\u0665"}
    assert_error(await client.put("/v1/apps/app-1", json=fee, headers=admin), 422, "VALIDATION_ERROR")
    assert_error(await client.put("/v1/apps/app-1", json={**fee, "platform_fee_percentage": "2.5",
                                                            "share_price": "\uff15\uff10\uff10"}, headers=admin),
                 422, "INVALID_AMOUNT")
    assert (await client.get("/v1/apps/app-1", headers=admin)).json()["platform_fee_percentage"] == "2.50"


async def test_amount_that_is_not_whole_shares_is_invalid_amount(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))  # share price 1000.00
    investor = auth("investor-1")
    response = await client.post("/v1/payments", json=investment(amount="1500.00"), headers=investor)
    error = assert_error(response, 422, "INVALID_AMOUNT")
    assert error["details"]["share_price"] == "1000.00"
    assert await payment_count(client, investor) == 0


async def test_shares_and_amount_that_disagree_are_invalid_amount(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    response = await client.post("/v1/payments", json=investment(amount="2000.00", shares=3),
                                 headers=auth("investor-1"))
    assert_error(response, 422, "INVALID_AMOUNT")


async def test_neither_shares_nor_amount_is_invalid_amount(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    assert_error(await client.post("/v1/payments", json=investment(), headers=auth("investor-1")),
                 422, "INVALID_AMOUNT")


async def test_above_max_payment_amount_is_invalid_amount(client: httpx.AsyncClient, auth: Auth) -> None:
    # default MAX_PAYMENT_AMOUNT is 10000000.00: 10000 shares at 1000.00 is exactly the maximum
    await put_app(client, auth("admin-1", admin=True), total_shares=100_000)
    investor = auth("investor-1")
    error = assert_error(
        await client.post("/v1/payments", json=investment(shares=10_001), headers=investor), 422, "INVALID_AMOUNT"
    )
    assert "10000000.00" in error["message"]
    assert_error(await client.post("/v1/payments", json=investment(amount="10000001.00"), headers=investor),
                 422, "INVALID_AMOUNT")
    assert await payment_count(client, investor) == 0
    at_limit = await invest(client, investor, shares=10_000)
    assert at_limit["amount"] == "10000000.00"


async def test_more_shares_than_available_is_shares_unavailable(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True), total_shares=10)
    investor = auth("investor-1")
    error = assert_error(await client.post("/v1/payments", json=investment(shares=11), headers=investor),
                         409, "SHARES_UNAVAILABLE")
    assert error["details"] == {"shares_requested": 11, "shares_available": 10}
    assert await payment_count(client, investor) == 0


@pytest.mark.parametrize("currency", ["GHS", "XYZ"])
async def test_wrong_currency_for_the_app_is_currency_not_supported(
    client: httpx.AsyncClient, auth: Auth, currency: str
) -> None:
    await put_app(client, auth("admin-1", admin=True))  # an NGN app
    investor = auth("investor-1")
    response = await client.post("/v1/payments", json=investment(shares=1, currency=currency), headers=investor)
    error = assert_error(response, 422, "CURRENCY_NOT_SUPPORTED")
    assert error["details"]["currency"] == currency
    assert await payment_count(client, investor) == 0


# Objects


async def test_unknown_app_is_404(client: httpx.AsyncClient, auth: Auth) -> None:
    investor = auth("investor-1")
    error = assert_error(await client.post("/v1/payments", json=investment(shares=1, app_id="no-such-app"),
                                           headers=investor), 404, "NOT_FOUND")
    assert error["details"] == {"app_id": "no-such-app"}
    assert_error(await client.get("/v1/apps/no-such-app", headers=investor), 404, "NOT_FOUND")


async def test_someone_elses_payment_is_404(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    payment = await invest(client, auth("investor-1"), shares=1)
    other = auth("investor-2")
    reference = payment["reference"]
    assert_error(await client.get(f"/v1/payments/{reference}", headers=other), 404, "NOT_FOUND")
    assert_error(await client.post(f"/v1/payments/{reference}/verify", headers=other), 404, "NOT_FOUND")
    assert (await client.get("/v1/payments", headers=other)).json()["items"] == []
    # the same answer as for a reference that does not exist at all
    assert_error(await client.get("/v1/payments/pay-nope", headers=other), 404, "NOT_FOUND")
    assert (await client.get(f"/v1/payments/{reference}", headers=auth("admin-2", admin=True))).status_code == 200


# Authentication and authorization


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/payments"), 401, "UNAUTHENTICATED")
    assert_error(await client.post("/v1/payments", json=investment(shares=1)), 401, "UNAUTHENTICATED")
    assert_error(await client.get("/v1/apps/app-1"), 401, "UNAUTHENTICATED")
    assert_error(await client.get("/v1/payments", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
                 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"payment_type": "investment"}', b'{"unknown": 1}', b""],
)
async def test_authentication_is_checked_before_the_body(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/v1/payments", content=content, headers={"Content-Type": "application/json"})
    assert_error(response, 401, "UNAUTHENTICATED")
    response = await client.post(
        "/v1/payments", content=content,
        headers={"Content-Type": "application/json", "Authorization": "Bearer not-a-jwt"},
    )
    assert_error(response, 401, "UNAUTHENTICATED")


def _token(settings: Settings, **claims: Any) -> dict[str, str]:
    payload = {"sub": "investor-1", "roles": [], "exp": int(time.time()) + 600, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, settings.jwt_secret.get_secret_value(), 'HS256')}"}


async def test_bad_or_expired_tokens_are_401(client: httpx.AsyncClient, settings: Settings) -> None:
    bad = [
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer " + jwt.encode({"sub": "x", "exp": int(time.time()) + 600},
                                                 "some-other-secret-of-enough-length-0123456789", "HS256")},
        _token(settings, exp=int(time.time()) - 60),
        _token(settings, sub=""),
        _token(settings, roles="admin"),
    ]
    for headers in bad:
        assert_error(await client.get("/v1/payments", headers=headers), 401, "UNAUTHENTICATED")
    no_exp = {"Authorization": "Bearer " + jwt.encode({"sub": "investor-1"}, settings.jwt_secret.get_secret_value(),
                                                      "HS256")}
    assert_error(await client.get("/v1/payments", headers=no_exp), 401, "UNAUTHENTICATED")
    expired = assert_error(await client.get("/v1/payments", headers=_token(settings, exp=int(time.time()) - 60)),
                           401, "UNAUTHENTICATED")
    assert "expired" in expired["message"].lower()
    # the same token, still valid, is accepted
    assert (await client.get("/v1/payments", headers=_token(settings))).status_code == 200


async def test_non_admin_cannot_register_apps(client: httpx.AsyncClient, auth: Auth) -> None:
    body = {"name": "Farm Tools", "owner_id": "owner-1", "currency": "NGN", "share_price": "1000.00",
            "total_shares": 1000}
    assert_error(await client.put("/v1/apps/app-1", json=body, headers=auth("investor-1")), 403, "UNAUTHORIZED")
    assert_error(await client.get("/v1/apps/app-1", headers=auth("investor-1")), 404, "NOT_FOUND")
    assert (await client.put("/v1/apps/app-1", json=body, headers=auth("svc", service=True))).status_code == 200


# Server and gateway failures


async def test_unexpected_exception_is_500_without_internals(settings: Settings, auth: Auth) -> None:
    application = create_app(settings, loopback=True)

    @application.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    async with (
        LifespanManager(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(application, raise_app_exceptions=False), base_url=BASE_URL
        ) as http,
    ):
        response = await http.get("/v1/boom", headers=auth("investor-1"))
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret detail" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert error["details"] == {}


async def test_gateway_failure_is_502_and_stores_nothing(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    app.state.sandbox.faults.fail_next(5, status=500)
    try:
        response = await client.post("/v1/payments", json=investment(shares=2), headers=investor)
    finally:
        app.state.sandbox.faults.clear()
    error = assert_error(response, 502, "GATEWAY_ERROR")
    assert error["details"]["gateway_message"] == "Sandbox fault: injected HTTP 500"
    assert error["details"]["gateway_status"] == 500
    assert await payment_count(client, investor) == 0
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_available"] == 1000
    # the gateway is back: the same request goes through
    assert (await invest(client, investor, shares=2))["status"] == "pending"
