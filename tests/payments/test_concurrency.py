"""Money applied exactly once under real concurrency: duplicate webhooks, competing workers, webhook
versus client verify, and two investors racing for the last shares. PostgreSQL only (row locks,
SKIP LOCKED); without TEST_DATABASE_URL these tests are skipped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.gateway.signature import sign
from app.ledger import accounts
from app.models import LedgerAccount, WebhookEvent
from app.worker import Worker
from tests.conftest import requires_postgres
from tests.helpers import get_payment, invest, put_app, settle

pytestmark = requires_postgres

WEBHOOK = "/v1/webhooks/paystack"
SHARE_PRICE_KOBO = 100000  # put_app's default share price, NGN 1,000.00


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The reconciler stays away from fresh payments: the paths under test are the only ones crediting.
    return {"reconcile_pending_after_seconds": 3600}


def charge_success(app: FastAPI, reference: str) -> bytes:
    data = app.state.sandbox.transactions[reference].verify_data()
    return json.dumps({"event": "charge.success", "data": data}, separators=(",", ":")).encode()


async def post_signed(client: httpx.AsyncClient, app: FastAPI, body: bytes) -> httpx.Response:
    key = app.state.runtime.settings.paystack_secret_key.get_secret_value()
    return await client.post(
        WEBHOOK, content=body, headers={"content-type": "application/json", "x-paystack-signature": sign(body, key)}
    )


async def escrow_balance(app: FastAPI, app_id: str = "app-1") -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        name = accounts.escrow(app_id, "NGN")
        return await session.scalar(select(LedgerAccount.balance).where(LedgerAccount.name == name)) or 0


async def webhook_rows(app: FastAPI) -> list[WebhookEvent]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))).all())


async def deposits(client: httpx.AsyncClient, admin: dict[str, str], app_id: str = "app-1") -> list[dict[str, Any]]:
    response = await client.get("/v1/escrow/transactions", params={"app_id": app_id, "type": "deposit"}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def holdings(client: httpx.AsyncClient, headers: dict[str, str]) -> list[tuple[str, int]]:
    response = await client.get("/v1/holdings/me", headers=headers)
    assert response.status_code == 200, response.text
    return [(h["app_id"], h["shares"]) for h in response.json()["items"]]


async def assert_credited_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    admin: dict[str, str],
    payments: list[tuple[dict[str, str], dict[str, Any]]],
) -> None:
    """Each (investor headers, payment) is success with exactly one deposit, its shares, and the books agree."""
    found = await deposits(client, admin)
    by_reference: dict[str, list[dict[str, Any]]] = {}
    for deposit in found:
        by_reference.setdefault(deposit["gateway_reference"], []).append(deposit)
    assert sorted(by_reference) == sorted(p["reference"] for _, p in payments)
    assert all(len(items) == 1 for items in by_reference.values()), by_reference

    for investor, payment in payments:
        assert (await get_payment(client, investor, payment["reference"]))["status"] == "success"
        [deposit] = by_reference[payment["reference"]]
        assert deposit["amount"] == payment["amount"]
        assert await holdings(client, investor) == [("app-1", payment["shares"])]

    expected = sum(payment["shares"] for _, payment in payments) * SHARE_PRICE_KOBO
    assert await escrow_balance(app) == expected
    assert sum(int(d["amount"].replace(".", "")) for d in found) == expected
    assert (await client.get("/v1/apps/app-1", headers=admin)).json()["shares_issued"] == sum(
        payment["shares"] for _, payment in payments
    )
    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity


async def test_same_webhook_delivered_five_times_at_once_credits_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin)
    payments = []
    for n, shares in enumerate((2, 3, 5), start=1):
        investor = auth(f"investor-{n}")
        payment = await invest(client, investor, shares=shares)
        app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
        payments.append((investor, payment))

    bodies = [charge_success(app, p["reference"]) for _, p in payments]
    responses = await asyncio.gather(*(post_signed(client, app, body) for body in bodies for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 15, [r.text for r in responses if r.status_code != 200]
    assert all(r.json() == {"status": "ok"} for r in responses)
    assert len(await webhook_rows(app)) == 3

    await app.state.worker.drain()

    assert [row.status for row in await webhook_rows(app)] == ["processed"] * 3
    await assert_credited_once(client, app, admin, payments)


async def test_two_workers_draining_at_once_apply_each_event_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin)
    payments = []
    for n in range(1, 9):
        investor = auth(f"investor-{n}")
        payment = await invest(client, investor, shares=n)
        app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
        payments.append((investor, payment))
    for _, payment in payments:
        assert (await post_signed(client, app, charge_success(app, payment["reference"]))).status_code == 200
    assert [row.status for row in await webhook_rows(app)] == ["pending"] * 8

    runtime = app.state.runtime
    await asyncio.gather(Worker(runtime).drain(), Worker(runtime).drain(), Worker(runtime).drain())

    rows = await webhook_rows(app)
    assert [row.status for row in rows] == ["processed"] * 8
    assert all(row.attempts == 1 for row in rows), [(row.id, row.attempts, row.last_error) for row in rows]
    await assert_credited_once(client, app, admin, payments)


async def test_webhook_racing_client_verify_credits_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=7)
    reference = payment["reference"]
    app.state.sandbox.settle_charge(reference, "success", send_webhook=False)

    async def webhook_then_worker() -> httpx.Response:
        response = await post_signed(client, app, charge_success(app, reference))
        await app.state.worker.drain()
        return response

    async def verify() -> httpx.Response:
        return await client.post(f"/v1/payments/{reference}/verify", headers=investor)

    delivered, *verified = await asyncio.gather(webhook_then_worker(), *(verify() for _ in range(4)))

    assert delivered.status_code == 200, delivered.text
    assert [r.status_code for r in verified] == [200] * 4, [r.text for r in verified]
    assert [r.json()["status"] for r in verified] == ["success"] * 4
    await app.state.worker.drain()
    await assert_credited_once(client, app, admin, [(investor, payment)])


async def test_last_shares_bought_by_two_investors_at_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin, total_shares=10)
    alice, bob = auth("investor-a"), auth("investor-b")
    # none issued yet, so both may start a payment for all ten
    payments = {"a": (alice, await invest(client, alice, shares=10)), "b": (bob, await invest(client, bob, shares=10))}
    for _, payment in payments.values():
        app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)

    responses = await asyncio.gather(
        *(
            client.post(f"/v1/payments/{payment['reference']}/verify", headers=headers)
            for headers, payment in payments.values()
        )
    )
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]

    await settle(app)

    held = {name: await holdings(client, headers) for name, (headers, _) in payments.items()}
    winners = [name for name, items in held.items() if items == [("app-1", 10)]]
    assert len(winners) == 1, held
    winner = winners[0]
    loser = "b" if winner == "a" else "a"
    assert held[loser] == []
    app_view = (await client.get("/v1/apps/app-1", headers=admin)).json()
    assert app_view["shares_issued"] == 10 and app_view["shares_available"] == 0

    won_headers, won_payment = payments[winner]
    lost_headers, lost_payment = payments[loser]
    assert (await get_payment(client, won_headers, won_payment["reference"]))["status"] == "success"
    lost = await get_payment(client, lost_headers, lost_payment["reference"])
    assert lost["status"] == "refunded"
    assert lost["note"] and "sold out" in lost["note"]
    assert lost["refunded_amount"] == lost_payment["amount"] == "10000.00"

    # the money went back through the gateway, and its refund.processed came back to us
    refunds = list(app.state.sandbox.refunds.values())
    assert [(r.transaction.reference, r.amount, r.status) for r in refunds] == [
        (lost_payment["reference"], 10 * SHARE_PRICE_KOBO, "processed")
    ]
    assert [(row.event, row.status) for row in await webhook_rows(app)] == [("refund.processed", "processed")]

    [deposit] = await deposits(client, admin)
    assert deposit["gateway_reference"] == won_payment["reference"]
    assert await escrow_balance(app) == 10 * SHARE_PRICE_KOBO
    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity


async def test_unreadable_signed_body_delivered_at_once_is_kept_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    bodies = [b"[" * 100_000 + b"]" * 100_000, b'{"event":"charge.success","data":[1]}']
    responses = await asyncio.gather(*(post_signed(client, app, body) for body in bodies for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses if r.status_code != 200]
    await asyncio.gather(Worker(app.state.runtime).drain(), Worker(app.state.runtime).drain())

    rows = await webhook_rows(app)
    assert [(row.status, row.attempts) for row in rows] == [("ignored", 0)] * 2
