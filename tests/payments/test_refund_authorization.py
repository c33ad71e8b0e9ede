"""GET /v1/refunds/{id}: an admin, or the investor whose payment was refunded; anyone else gets 404."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import OWNER, invest, pay, put_app, settle
from tests.payments.refund_support import deposit_of, request_refund

Auth = Callable[..., dict[str, str]]
INVESTOR = "investor-1"


@pytest.fixture
async def refund(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> dict:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    await put_app(client, admin)
    payment = await invest(client, investor, shares=5)
    await pay(client, app, payment)
    deposit = await deposit_of(client, investor)
    made = await request_refund(client, admin, deposit["id"], "1000.00")
    await settle(app)
    return {**made, "payment_reference": payment["reference"], "deposit_id": deposit["id"]}


@pytest.mark.parametrize("who", ["admin", "payer"])
async def test_admin_and_payer_see_the_refund(client: httpx.AsyncClient, auth: Auth, refund: dict, who: str) -> None:
    headers = auth("admin-1", admin=True) if who == "admin" else auth(INVESTOR)
    response = await client.get(f"/v1/refunds/{refund['id']}", headers=headers)

    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["id"] == refund["id"]
    assert seen["transaction_id"] == refund["deposit_id"]
    assert seen["escrow_transaction_id"] == refund["escrow_transaction_id"]
    assert seen["payment_reference"] == refund["payment_reference"]
    assert (seen["amount"], seen["currency"], seen["status"]) == ("1000.00", "NGN", "processed")
    assert seen["created_at"] == refund["created_at"]


@pytest.mark.parametrize("user", ["investor-2", OWNER, "approver-1"])
async def test_anyone_else_is_told_it_does_not_exist(
    client: httpx.AsyncClient, auth: Auth, refund: dict, user: str
) -> None:
    response = await client.get(f"/v1/refunds/{refund['id']}", headers=auth(user))

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_anonymous_is_401(client: httpx.AsyncClient, refund: dict) -> None:
    response = await client.get(f"/v1/refunds/{refund['id']}")

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_an_unknown_refund_is_404_even_for_an_admin(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get("/v1/refunds/rfd_nope", headers=auth("admin-1", admin=True))

    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
