"""Shares reserved and moved exactly once under real concurrency: a seller offering the same shares twice
at once, two successful payments for one transfer verified at once, and two buyers paying at once for
one seller's shares. PostgreSQL only (row locks);
without TEST_DATABASE_URL these tests are skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import requires_postgres
from tests.helpers import get_payment, put_app, settle
from tests.shares.test_transfers import (
    get_transfer,
    holder,
    holdings,
    integrity_ok,
    offer,
    offered,
    transfer_payment,
)

pytestmark = requires_postgres

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The reconciler stays away from fresh payments: the paths under test are the only ones crediting.
    return {"reconcile_pending_after_seconds": 3600}


async def test_the_same_shares_offered_twice_at_once(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    admin, seller = auth("admin-1", admin=True), auth("seller-1")
    await put_app(client, admin)
    await holder(client, app, seller, 10)

    for _ in range(3):  # a few rounds: the race is won by either side
        responses = await asyncio.gather(offer(client, seller, buyer_id="buyer-a", shares=10),
                                         offer(client, seller, buyer_id="buyer-b", shares=10))
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        lost = next(r for r in responses if r.status_code == 409)
        assert lost.json()["error"]["code"] == "SHARES_UNAVAILABLE", lost.text
        assert await holdings(client, seller) == {"app-1": (10, 10)}
        won = next(r for r in responses if r.status_code == 201).json()
        cancelled = await client.post(f"/v1/share-transfers/{won['id']}/cancel", headers=seller)
        assert cancelled.status_code == 200, cancelled.text
        assert await holdings(client, seller) == {"app-1": (10, 0)}

    pending = (await client.get("/v1/share-transfers?status=pending", headers=admin)).json()["items"]
    assert pending == []


async def test_two_payments_for_one_transfer_verified_at_once(client: httpx.AsyncClient, app: FastAPI,
                                                              auth: Auth) -> None:
    admin, seller, buyer = auth("admin-1", admin=True), auth("seller-1"), auth("buyer-a")
    await put_app(client, admin)
    await holder(client, app, seller, 10)
    transfer = await offered(client, seller, buyer_id="buyer-a", shares=10, price="1000.00")
    payments = [await transfer_payment(client, buyer, transfer) for _ in range(2)]
    for payment in payments:
        app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)

    verified = await asyncio.gather(*(client.post(f"/v1/payments/{p['reference']}/verify", headers=buyer)
                                      for p in payments))
    assert all(r.status_code == 200 for r in verified), [r.text for r in verified]
    await settle(app)

    assert await holdings(client, buyer) == {"app-1": (10, 0)}
    assert await holdings(client, seller) == {}
    done = await get_transfer(client, buyer, transfer["id"])
    assert done["status"] == "completed"
    statuses = {p["id"]: (await get_payment(client, buyer, p["reference"]))["status"] for p in payments}
    assert statuses[done["payment_id"]] == "success"
    refunded = [pid for pid, status in statuses.items() if pid != done["payment_id"]]
    assert [statuses[pid] for pid in refunded] == ["refunded"]
    refunds = list(app.state.sandbox.refunds.values())
    assert [(r.amount, r.status) for r in refunds] == [(1000000, "processed")]
    payouts = (await client.get("/v1/payouts/me", headers=seller)).json()["items"]
    assert [(p["amount"], p["reason"]) for p in payouts] == [("9750.00", "share_sale")]
    await integrity_ok(client, admin)


async def test_two_buyers_paying_at_once_for_one_sellers_shares(client: httpx.AsyncClient, app: FastAPI,
                                                               auth: Auth) -> None:
    admin, seller = auth("admin-1", admin=True), auth("seller-1")
    buyers = {"buyer-a": (auth("buyer-a"), 6), "buyer-b": (auth("buyer-b"), 4)}
    await put_app(client, admin)
    await holder(client, app, seller, 10)
    transfers = {
        buyer_id: await offered(client, seller, buyer_id=buyer_id, shares=shares, price="1000.00")
        for buyer_id, (_, shares) in buyers.items()
    }
    over = await offer(client, seller, buyer_id="buyer-c", shares=1)
    assert over.status_code == 409, over.text  # all ten are reserved now

    payments = {buyer_id: await transfer_payment(client, buyers[buyer_id][0], transfer)
                for buyer_id, transfer in transfers.items()}
    for payment in payments.values():
        app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
    verified = await asyncio.gather(*(
        client.post(f"/v1/payments/{payment['reference']}/verify", headers=buyers[buyer_id][0])
        for buyer_id, payment in payments.items()
    ))
    assert all(r.status_code == 200 for r in verified), [r.text for r in verified]
    await settle(app)

    for buyer_id, (headers, shares) in buyers.items():
        assert await holdings(client, headers) == {"app-1": (shares, 0)}
        assert (await get_transfer(client, headers, transfers[buyer_id]["id"]))["status"] == "completed"
    assert await holdings(client, seller) == {}
    payouts = (await client.get("/v1/payouts/me", headers=seller)).json()["items"]
    assert sorted(p["amount"] for p in payouts) == ["3900.00", "5850.00"]  # 2.5% platform fee off each sale
    await integrity_ok(client, admin)
