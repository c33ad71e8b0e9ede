"""Share transfers over HTTP with the sandbox: offer, reserve, pay, move, cancel, expire, refund, cap table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.ledger import accounts
from app.ledger.service import balance
from app.models import ShareTransfer
from app.models.base import utcnow
from tests.escrow.test_full_path import register_payout_account
from tests.helpers import OWNER, get_payment, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
SELLER, BUYER, STRANGER, ADMIN = "seller-1", "buyer-1", "stranger-1", "admin-1"


# ---- steps the share tests share ---------------------------------------------------------------------


async def holder(client: httpx.AsyncClient, app: FastAPI, who: dict[str, str], shares: int,
                 app_id: str = "app-1") -> None:
    """`who` invests in `shares` shares and pays."""
    await pay(client, app, await invest(client, who, app_id=app_id, shares=shares))


async def offer(client: httpx.AsyncClient, seller: dict[str, str], *, buyer_id: str = BUYER, shares: int = 2,
                price: str = "500.10", app_id: str = "app-1", **headers: str) -> httpx.Response:
    return await client.post("/v1/share-transfers", headers={**seller, **headers},
                             json={"app_id": app_id, "buyer_id": buyer_id, "shares": shares,
                                   "price_per_share": price})


async def offered(client: httpx.AsyncClient, seller: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    response = await offer(client, seller, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


async def pay_transfer(client: httpx.AsyncClient, who: dict[str, str], transfer: dict[str, Any],
                       **extra: Any) -> httpx.Response:
    return await client.post("/v1/payments", headers=who, json={
        "payment_type": "share_transfer", "app_id": transfer["app_id"], "email": "buyer@example.com",
        "currency": "NGN", "share_transfer_id": transfer["id"], **extra})


async def transfer_payment(client: httpx.AsyncClient, who: dict[str, str], transfer: dict[str, Any]) -> dict:
    response = await pay_transfer(client, who, transfer)
    assert response.status_code == 201, response.text
    return response.json()


async def holdings(client: httpx.AsyncClient, who: dict[str, str]) -> dict[str, tuple[int, int]]:
    """app_id -> (shares, reserved_shares)"""
    response = await client.get("/v1/holdings/me", headers=who)
    assert response.status_code == 200, response.text
    return {h["app_id"]: (h["shares"], h["reserved_shares"]) for h in response.json()["items"]}


async def get_transfer(client: httpx.AsyncClient, who: dict[str, str], transfer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/share-transfers/{transfer_id}", headers=who)
    assert response.status_code == 200, response.text
    return response.json()


async def integrity_ok(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.get("/v1/admin/integrity", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["ok"], response.json()


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, response.text
    return body["details"]


@pytest.fixture
def users(auth: Auth) -> dict[str, dict[str, str]]:
    return {"seller": auth(SELLER), "buyer": auth(BUYER), "stranger": auth(STRANGER),
            "admin": auth(ADMIN, admin=True), "owner": auth(OWNER)}


@pytest.fixture
async def seller_holds_10(client: httpx.AsyncClient, app: FastAPI, users: dict[str, dict[str, str]]) -> None:
    await put_app(client, users["admin"])  # share price 1000.00, fee 2.50%, no lock-in
    await holder(client, app, users["seller"], 10)


# ---- offering -----------------------------------------------------------------------------------------


async def test_lock_in_refuses_an_early_offer(client: httpx.AsyncClient, app: FastAPI,
                                              users: dict[str, dict[str, str]]) -> None:
    await put_app(client, users["admin"], lock_in_days=30)
    await holder(client, app, users["seller"], 10)

    refused = await offer(client, users["seller"])
    details = error(refused, 409, "INVALID_STATE")
    acquired = datetime.fromisoformat((await client.get("/v1/holdings/me", headers=users["seller"]))
                                      .json()["items"][0]["acquired_at"])
    assert datetime.fromisoformat(details["unlock_date"]) == acquired + timedelta(days=30)
    assert await holdings(client, users["seller"]) == {"app-1": (10, 0)}  # nothing reserved

    await put_app(client, users["admin"], lock_in_days=0)
    assert (await offered(client, users["seller"]))["status"] == "pending"


async def test_an_offer_reserves_the_shares(client: httpx.AsyncClient, seller_holds_10: None,
                                            users: dict[str, dict[str, str]]) -> None:
    seller = users["seller"]
    # 2 x 500.10 = 1000.20; 2.50% of it is 25.005, half-up to the kobo 25.01
    transfer = await offered(client, seller, shares=2, price="500.10")
    assert transfer["id"] and transfer["status"] == "pending"
    assert (transfer["seller_id"], transfer["buyer_id"], transfer["shares"]) == (SELLER, BUYER, 2)
    assert (transfer["price_per_share"], transfer["amount"], transfer["platform_fee"],
            transfer["seller_receives"], transfer["currency"]) == ("500.10", "1000.20", "25.01", "975.19", "NGN")
    assert await holdings(client, seller) == {"app-1": (10, 2)}  # `shares` still counts the reserved ones

    details = error(await offer(client, seller, shares=9), 409, "SHARES_UNAVAILABLE")
    assert details["shares_available"] == 8
    error(await offer(client, users["stranger"], shares=1), 409, "SHARES_UNAVAILABLE")  # holds none
    error(await offer(client, seller, buyer_id=SELLER, shares=1), 422, "VALIDATION_ERROR")
    error(await offer(client, seller, app_id="app-missing", shares=1), 404, "NOT_FOUND")
    assert await holdings(client, seller) == {"app-1": (10, 2)}

    rest = await offered(client, seller, shares=8, price="1000")
    assert (rest["amount"], rest["platform_fee"], rest["seller_receives"]) == ("8000.00", "200.00", "7800.00")
    assert await holdings(client, seller) == {"app-1": (10, 10)}
    error(await offer(client, seller, shares=1), 409, "SHARES_UNAVAILABLE")


async def test_an_offer_is_idempotent_with_a_key(client: httpx.AsyncClient, seller_holds_10: None,
                                                 users: dict[str, dict[str, str]]) -> None:
    first = await offer(client, users["seller"], **{"Idempotency-Key": "offer-1"})
    again = await offer(client, users["seller"], **{"Idempotency-Key": "offer-1"})
    assert first.status_code == again.status_code == 201, again.text
    assert first.json()["id"] == again.json()["id"]
    assert await holdings(client, users["seller"]) == {"app-1": (10, 2)}


# ---- paying -------------------------------------------------------------------------------------------


async def test_the_buyer_pays_and_the_shares_move(client: httpx.AsyncClient, app: FastAPI, seller_holds_10: None,
                                                  users: dict[str, dict[str, str]]) -> None:
    seller, buyer, admin = users["seller"], users["buyer"], users["admin"]
    transfer = await offered(client, seller, shares=2, price="500.10")

    error(await pay_transfer(client, seller, transfer), 403, "UNAUTHORIZED")  # the seller sees it, may not pay
    error(await pay_transfer(client, users["stranger"], transfer), 404, "NOT_FOUND")  # hidden from others
    error(await pay_transfer(client, buyer, transfer, amount="1.00"), 422, "INVALID_AMOUNT")
    payment = await transfer_payment(client, buyer, transfer)
    assert (payment["amount"], payment["currency"], payment["payment_type"], payment["status"]) == \
        (transfer["amount"], "NGN", "share_transfer", "pending")
    assert (payment["share_transfer_id"], payment["user_id"]) == (transfer["id"], BUYER)

    await pay(client, app, payment)
    assert (await get_payment(client, buyer, payment["reference"]))["status"] == "success"
    assert await holdings(client, buyer) == {"app-1": (2, 0)}
    assert await holdings(client, seller) == {"app-1": (8, 0)}
    done = await get_transfer(client, seller, transfer["id"])
    assert done["status"] == "completed" and done["payment_id"] == payment["id"] and done["completed_at"]

    # the seller is owed the price less the fee; the payout goes out once they have an account
    payouts = (await client.get("/v1/payouts/me", headers=seller)).json()["items"]
    assert [(p["amount"], p["reason"], p["status"], p["source_id"]) for p in payouts] == \
        [("975.19", "share_sale", "awaiting_payout_account", transfer["id"])]
    await register_payout_account(client, seller)
    await settle(app)
    payouts = (await client.get("/v1/payouts/me", headers=seller)).json()["items"]
    assert [(p["amount"], p["status"]) for p in payouts] == [("975.19", "paid")]
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.platform_fees("NGN")) == 2501
        assert await balance(session, accounts.payable(SELLER, "NGN")) == 0
    await integrity_ok(client, admin)

    # a completed transfer can be neither paid again nor cancelled
    error(await pay_transfer(client, buyer, transfer), 409, "INVALID_STATE")
    error(await client.post(f"/v1/share-transfers/{transfer['id']}/cancel", headers=buyer), 409, "INVALID_STATE")


async def test_a_registered_seller_is_paid_out_at_once(client: httpx.AsyncClient, app: FastAPI,
                                                       seller_holds_10: None,
                                                       users: dict[str, dict[str, str]]) -> None:
    await register_payout_account(client, users["seller"])
    transfer = await offered(client, users["seller"], shares=10, price="1000.00")
    await pay(client, app, await transfer_payment(client, users["buyer"], transfer))
    payouts = (await client.get("/v1/payouts/me", headers=users["seller"])).json()["items"]
    assert [(p["amount"], p["reason"], p["status"]) for p in payouts] == [("9750.00", "share_sale", "paid")]
    assert await holdings(client, users["seller"]) == {}  # sold out: no holding left to show
    assert await holdings(client, users["buyer"]) == {"app-1": (10, 0)}
    await integrity_ok(client, users["admin"])


async def test_a_failed_charge_changes_nothing(client: httpx.AsyncClient, app: FastAPI, seller_holds_10: None,
                                               users: dict[str, dict[str, str]]) -> None:
    transfer = await offered(client, users["seller"])
    await pay(client, app, await transfer_payment(client, users["buyer"], transfer), outcome="failed")
    assert (await get_transfer(client, users["buyer"], transfer["id"]))["status"] == "pending"
    assert await holdings(client, users["seller"]) == {"app-1": (10, 2)}
    assert await holdings(client, users["buyer"]) == {}


# ---- cancelling and expiry ----------------------------------------------------------------------------


async def test_cancel_releases_the_reservation(client: httpx.AsyncClient, seller_holds_10: None,
                                               users: dict[str, dict[str, str]]) -> None:
    seller, buyer = users["seller"], users["buyer"]
    by_seller = await offered(client, seller, shares=3)
    by_buyer = await offered(client, seller, shares=4)
    assert await holdings(client, seller) == {"app-1": (10, 7)}

    error(await client.post(f"/v1/share-transfers/{by_seller['id']}/cancel", headers=users["stranger"]),
          404, "NOT_FOUND")
    cancelled = await client.post(f"/v1/share-transfers/{by_seller['id']}/cancel", headers=seller)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await holdings(client, seller) == {"app-1": (10, 4)}
    cancelled = await client.post(f"/v1/share-transfers/{by_buyer['id']}/cancel", headers=buyer)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    assert await holdings(client, seller) == {"app-1": (10, 0)}

    twice = await client.post(f"/v1/share-transfers/{by_seller['id']}/cancel", headers=seller)
    assert error(twice, 409, "INVALID_STATE")["status"] == "cancelled"
    assert await holdings(client, seller) == {"app-1": (10, 0)}  # released once only
    error(await pay_transfer(client, buyer, by_buyer), 409, "INVALID_STATE")


async def test_a_payment_after_cancel_is_refunded(client: httpx.AsyncClient, app: FastAPI, seller_holds_10: None,
                                                  users: dict[str, dict[str, str]]) -> None:
    seller, buyer = users["seller"], users["buyer"]
    transfer = await offered(client, seller, shares=2, price="500.10")
    payment = await transfer_payment(client, buyer, transfer)
    cancelled = await client.post(f"/v1/share-transfers/{transfer['id']}/cancel", headers=seller)
    assert cancelled.status_code == 200, cancelled.text

    await pay(client, app, payment)
    paid = await get_payment(client, buyer, payment["reference"])
    assert (paid["status"], paid["refunded_amount"]) == ("refunded", "1000.20")
    assert "share transfer cancelled" in paid["note"]
    refunds = [r for r in app.state.sandbox.refunds.values() if r.transaction.reference == payment["reference"]]
    assert [(r.amount, r.status) for r in refunds] == [(100020, "processed")]
    assert await holdings(client, seller) == {"app-1": (10, 0)}
    assert await holdings(client, buyer) == {}
    assert (await get_transfer(client, buyer, transfer["id"]))["status"] == "cancelled"
    assert (await client.get("/v1/payouts/me", headers=seller)).json()["items"] == []
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.platform_fees("NGN")) == 0
    await integrity_ok(client, users["admin"])


class TestExpiry:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"share_transfer_expiry_seconds": 0.01}

    async def test_an_unpaid_offer_expires(self, client: httpx.AsyncClient, app: FastAPI, seller_holds_10: None,
                                           users: dict[str, dict[str, str]]) -> None:
        transfer = await offered(client, users["seller"], shares=6)
        assert await holdings(client, users["seller"]) == {"app-1": (10, 6)}
        await asyncio.sleep(0.02)
        error(await pay_transfer(client, users["buyer"], transfer), 409, "INVALID_STATE")  # past its time

        await app.state.worker.drain()
        assert (await get_transfer(client, users["seller"], transfer["id"]))["status"] == "expired"
        assert await holdings(client, users["seller"]) == {"app-1": (10, 0)}
        error(await client.post(f"/v1/share-transfers/{transfer['id']}/cancel", headers=users["seller"]),
              409, "INVALID_STATE")

    async def test_a_payment_for_an_expired_offer_is_refunded(
        self, client: httpx.AsyncClient, app: FastAPI, seller_holds_10: None, users: dict[str, dict[str, str]],
    ) -> None:
        transfer = await offered(client, users["seller"], shares=1, price="1000")
        # the buyer starts paying while the offer still runs (its expiry pushed out), and pays after it expired
        async with app.state.runtime.db.unit_of_work() as session:
            await session.execute(update(ShareTransfer).where(ShareTransfer.id == transfer["id"])
                                  .values(expires_at=utcnow() + timedelta(hours=1)))
        payment = await transfer_payment(client, users["buyer"], transfer)
        async with app.state.runtime.db.unit_of_work() as session:
            await session.execute(update(ShareTransfer).where(ShareTransfer.id == transfer["id"])
                                  .values(expires_at=utcnow() - timedelta(seconds=1)))
        await app.state.worker.drain()
        assert (await get_transfer(client, users["buyer"], transfer["id"]))["status"] == "expired"

        await pay(client, app, payment)
        paid = await get_payment(client, users["buyer"], payment["reference"])
        assert paid["status"] == "refunded" and "share transfer expired" in paid["note"]
        assert await holdings(client, users["seller"]) == {"app-1": (10, 0)}
        await integrity_ok(client, users["admin"])


# ---- reading ------------------------------------------------------------------------------------------


async def test_seller_and_buyer_read_it_others_do_not(client: httpx.AsyncClient, app: FastAPI,
                                                      seller_holds_10: None,
                                                      users: dict[str, dict[str, str]]) -> None:
    transfer = await offered(client, users["seller"])
    await holder(client, app, users["stranger"], 3)
    theirs = await offered(client, users["stranger"], buyer_id="someone-else", shares=1)

    async def listed(who: str, query: str = "") -> list[str]:
        response = await client.get(f"/v1/share-transfers{query}", headers=users[who])
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert await listed("seller") == [transfer["id"]]
    assert await listed("buyer") == [transfer["id"]]
    assert await listed("owner") == []
    assert await listed("stranger") == [theirs["id"]]
    assert sorted(await listed("admin")) == sorted([transfer["id"], theirs["id"]])
    assert await listed("admin", "?status=cancelled") == []
    assert await listed("buyer", "?status=pending&app_id=app-1") == [transfer["id"]]
    assert await listed("buyer", "?app_id=app-2") == []
    page = (await client.get("/v1/share-transfers?limit=1", headers=users["admin"])).json()
    assert len(page["items"]) == 1 and page["next_cursor"]

    for who in ("seller", "buyer", "admin"):
        assert (await get_transfer(client, users[who], transfer["id"]))["id"] == transfer["id"]
    for who in ("stranger", "owner"):
        error(await client.get(f"/v1/share-transfers/{transfer['id']}", headers=users[who]), 404, "NOT_FOUND")
    error(await client.get("/v1/share-transfers/stf_missing", headers=users["admin"]), 404, "NOT_FOUND")


async def test_cap_table_now_and_as_of(client: httpx.AsyncClient, app: FastAPI,
                                       users: dict[str, dict[str, str]], auth: Auth) -> None:
    admin, owner, seller = users["admin"], users["owner"], users["seller"]
    await put_app(client, admin, total_shares=100)
    for who in ("seller", "investor-2", "investor-3"):
        await holder(client, app, users[who] if who in users else auth(who), 10)

    async def cap_table(who: dict[str, str], **params: str) -> dict[str, Any]:
        response = await client.get("/v1/apps/app-1/cap-table", headers=who, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["items"]:
            assert sum(Decimal(i["percentage"]) for i in body["items"]) == Decimal("100.00")
        return body

    before = await cap_table(owner)
    assert (before["total_shares"], before["shares_issued"]) == (100, 30)
    # a third each: largest remainder puts the odd hundredth on the first holder
    assert [(i["user_id"], i["shares"], i["percentage"]) for i in before["items"]] == \
        [("investor-2", 10, "33.34"), ("investor-3", 10, "33.33"), (SELLER, 10, "33.33")]
    error(await client.get("/v1/apps/app-1/cap-table", headers=seller), 403, "UNAUTHORIZED")
    error(await client.get("/v1/apps/app-missing/cap-table", headers=admin), 404, "NOT_FOUND")

    transfer = await offered(client, seller, buyer_id="buyer-1", shares=5, price="1200")
    await pay(client, app, await transfer_payment(client, users["buyer"], transfer))
    after = await cap_table(admin)
    assert after["shares_issued"] == 30
    assert [(i["user_id"], i["shares"], i["percentage"]) for i in after["items"]] == \
        [("buyer-1", 5, "16.67"), ("investor-2", 10, "33.33"), ("investor-3", 10, "33.33"), (SELLER, 5, "16.67")]

    # the offer was made before the shares moved: the cap table then was the earlier one
    then = await cap_table(owner, as_of=transfer["created_at"])
    assert [(i["user_id"], i["shares"], i["percentage"]) for i in then["items"]] == \
        [(i["user_id"], i["shares"], i["percentage"]) for i in before["items"]]
    assert then["shares_issued"] == 30
    long_ago = await cap_table(owner, as_of="2000-01-01T00:00:00+00:00")
    assert (long_ago["items"], long_ago["shares_issued"]) == ([], 0)
    # a time without an offset is read as UTC (it used to be a 500)
    naive = await cap_table(owner, as_of=datetime.fromisoformat(transfer["created_at"]).replace(tzinfo=None)
                            .isoformat())
    assert naive["items"] == then["items"]
    later = await cap_table(owner, as_of=(datetime.fromisoformat(transfer["created_at"]) + timedelta(days=1))
                            .isoformat())
    assert [(i["user_id"], i["shares"]) for i in later["items"]] == [(i["user_id"], i["shares"])
                                                                     for i in after["items"]]


async def test_holdings_are_empty_for_newcomers(client: httpx.AsyncClient, users: dict[str, dict[str, str]]
                                                ) -> None:
    response = await client.get("/v1/holdings/me", headers=users["stranger"])
    assert response.status_code == 200 and response.json()["items"] == [], response.text
