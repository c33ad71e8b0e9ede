"""Transfer OTP and the gateway's balance, through the sandbox: payouts awaiting their OTP (finalize, a wrong
OTP, resend), distributions sent as single transfers while OTP is on, and payouts awaiting funds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.gateway.sandbox.state import TEST_TRANSFER_OTP
from app.ledger import accounts
from tests.distributions.test_distributions import (
    books_ok,
    buy_shares,
    distribute,
    error,
    gateway_calls,  # noqa: F401 (a fixture)
    ledger_balance,
    pay_revenue,
    payout_rows,
    transfer_log,  # noqa: F401 (a fixture)
)
from tests.escrow.test_full_path import register_payout_account
from tests.helpers import OWNER, put_app, settle
from tests.payouts.test_payouts import _books_ok, _payable, _payout, _release

Auth = Callable[..., dict[str, str]]
ADMIN = "admin-1"


async def _finalize(client: httpx.AsyncClient, auth: Auth, payout_id: str, otp: str) -> httpx.Response:
    return await client.post(f"/v1/payouts/{payout_id}/finalize", headers=auth(ADMIN, admin=True), json={"otp": otp})


async def _listed(client: httpx.AsyncClient, auth: Auth, status: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/payouts", headers=auth(ADMIN, admin=True), params={"status": status})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _gauge(text: str, status: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(f'payouts_open{{status="{status}"}}')]
    return float(line.split()[-1])


async def test_a_payout_awaiting_its_otp_is_paid_once_finalized(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    sandbox = app.state.sandbox
    sandbox.transfer_otp = True
    payout = await _release(client, app, auth)
    await settle(app)

    waiting = await _payout(client, auth)
    assert (waiting["status"], waiting["attempts"]) == ("awaiting_otp", 1)
    transfer = sandbox.transfers[payout["reference"]]
    assert transfer.status == "otp"
    assert await _payable(app) == 0  # the transfer exists: its money is in flight, not owed again
    assert [p["id"] for p in await _listed(client, auth, "awaiting_otp")] == [payout["id"]]
    await settle(app)  # nothing happens while it waits: it is not sent again
    assert len(sandbox.transfer_history) == 1
    assert _gauge((await client.get("/metrics")).text, "awaiting_otp") == 1
    await _books_ok(client, app, auth)
    # the payee hears it once, however many passes see the payout waiting
    waits = (await client.get("/v1/events/me?type=payout.awaiting_otp", headers=auth(OWNER))).json()["items"]
    assert [(e["data"]["id"], e["data"]["status"]) for e in waits] == [(payout["id"], "awaiting_otp")]

    # a wrong OTP is the caller's mistake: refused, and the payout still waits for the right one
    wrong = await _finalize(client, auth, payout["id"], "000000")
    error(wrong, 422, "INVALID_OTP")
    assert wrong.json()["error"]["details"]["status"] == "awaiting_otp"
    assert (await _payout(client, auth))["status"] == "awaiting_otp"
    assert transfer.status == "otp"

    resent = await client.post(f"/v1/payouts/{payout['id']}/resend-otp", headers=auth(ADMIN, admin=True))
    assert resent.status_code == 200, resent.text
    assert resent.json()["status"] == "awaiting_otp"
    assert sandbox.otp_resends == {transfer.code: 1}

    finalized = await _finalize(client, auth, payout["id"], TEST_TRANSFER_OTP)
    assert finalized.status_code == 200, finalized.text
    assert finalized.json()["status"] in ("processing", "paid")
    error(await _finalize(client, auth, payout["id"], TEST_TRANSFER_OTP), 409, "INVALID_STATE")  # once
    error(await client.post(f"/v1/payouts/{payout['id']}/resend-otp", headers=auth(ADMIN, admin=True)),
          409, "INVALID_STATE")
    await settle(app)

    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 1)
    assert len(sandbox.transfer_history) == 1 and transfer.status == "success"
    assert await _payable(app) == 0
    assert _gauge((await client.get("/metrics")).text, "awaiting_otp") == 0
    await _books_ok(client, app, auth)


async def test_the_otp_routes_are_for_admins(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    app.state.sandbox.transfer_otp = True
    payout = await _release(client, app, auth)
    await settle(app)
    for path, body in (("finalize", {"otp": TEST_TRANSFER_OTP}), ("resend-otp", None)):
        url = f"/v1/payouts/{payout['id']}/{path}"
        error(await client.post(url, headers=auth(OWNER), json=body), 403, "UNAUTHORIZED")  # the payee
        error(await client.post(url, headers=auth("investor-1"), json=body), 404, "NOT_FOUND")
        assert (await client.post(url, json=body)).status_code == 401
        error(await client.post(f"/v1/payouts/po_missing/{path}", headers=auth(ADMIN, admin=True), json=body),
              404, "NOT_FOUND")
    for bad in ({}, {"otp": "12"}, {"otp": "12ab56"}, {"otp": TEST_TRANSFER_OTP, "extra": 1}):
        error(await _finalize_body(client, auth, payout["id"], bad), 422, "VALIDATION_ERROR")
    assert (await _payout(client, auth))["status"] == "awaiting_otp"
    assert app.state.sandbox.otp_resends == {}


async def _finalize_body(client: httpx.AsyncClient, auth: Auth, payout_id: str, body: Any) -> httpx.Response:
    return await client.post(f"/v1/payouts/{payout_id}/finalize", headers=auth(ADMIN, admin=True), json=body)


async def test_a_finalize_whose_answer_is_lost_asks_the_gateway(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    sandbox = app.state.sandbox
    sandbox.transfer_otp = True
    payout = await _release(client, app, auth)
    await settle(app)
    calls = _count_finalizes(app)

    # the finalize takes effect, then its answer is lost: the gateway is asked, and the payout goes on
    sandbox.faults.error_after_next(1, status=502, path_contains="/transfer/finalize_transfer")
    finalized = await _finalize(client, auth, payout["id"], TEST_TRANSFER_OTP)
    assert finalized.status_code == 200, finalized.text
    assert finalized.json()["status"] == "processing"
    assert calls == [payout["reference"]]  # not sent again
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    await _books_ok(client, app, auth)


def _count_finalizes(app: FastAPI) -> list[str]:
    gateway = app.state.runtime.gateway
    original = gateway.finalize_transfer
    calls: list[str] = []

    async def finalize_transfer(**kwargs: Any) -> Any:
        calls.append(kwargs["reference"])
        return await original(**kwargs)

    gateway.finalize_transfer = finalize_transfer
    return calls


HOLDERS = {"holder-a": 1, "holder-b": 2, "holder-c": 3}


async def test_distribution_payouts_go_as_single_transfers_while_otp_is_on(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, transfer_log: list[tuple[str, str, int]],  # noqa: F811
    gateway_calls: dict[str, list[list[str]]],  # noqa: F811
) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await buy_shares(client, app, auth, HOLDERS)
    for user_id in HOLDERS:
        await register_payout_account(client, auth(user_id))
    app.state.sandbox.transfer_otp = True
    await pay_revenue(client, app, owner, "600.00")
    assert (await distribute(client, owner)).status_code == 201
    await settle(app)

    payouts = await payout_rows(app)
    references = sorted(p.reference for p in payouts.values())
    # Paystack refused the bulk transfer (OTP is on): each payout went on its own, under its own reference
    assert [sorted(call) for call in gateway_calls["bulk"]] == [references]
    assert sorted(ref for [ref] in gateway_calls["single"]) == references
    assert {p.status for p in payouts.values()} == {"awaiting_otp"}
    for payout in payouts.values():
        assert await ledger_balance(app, accounts.payable(payout.user_id, "NGN")) == 0

    for payout in payouts.values():
        finalized = await _finalize(client, auth, payout.id, TEST_TRANSFER_OTP)
        assert finalized.status_code == 200, finalized.text
    await settle(app)
    assert {p.status for p in (await payout_rows(app)).values()} == {"paid"}
    await books_ok(client, app, auth, transfer_log)

    # the service remembers that OTP is on: the next distribution goes straight to single transfers
    await pay_revenue(client, app, owner, "600.00", period="2025-04")
    assert (await distribute(client, owner, period="2025-04")).status_code == 201
    await settle(app)
    assert len(gateway_calls["bulk"]) == 1 and len(gateway_calls["single"]) == 2 * len(HOLDERS)


@pytest.mark.parametrize("settings_overrides", [{"payout_funds_retry_seconds": 0}])
async def test_a_payout_the_balance_does_not_cover_awaits_funds_then_is_paid(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    sandbox = app.state.sandbox
    payout = await _release(client, app, auth)
    sandbox.set_balance("NGN", payout_amount := 125_000 - 1)
    await settle(app)

    waiting = await _payout(client, auth)
    assert (waiting["status"], waiting["attempts"]) == ("awaiting_funds", 0)
    assert "balance" in waiting["last_error"]
    assert sandbox.transfer_history == []  # nothing was asked of the gateway
    assert await _payable(app) == 125_000  # still owed, not in flight
    assert await ledger_balance(app, accounts.payout_in_flight("NGN")) == 0
    assert [p["id"] for p in await _listed(client, auth, "awaiting_funds")] == [payout["id"]]
    shown = (await client.get("/v1/payouts/me", headers=auth(OWNER), params={"status": "awaiting_funds"})).json()
    assert [p["id"] for p in shown["items"]] == [payout["id"]]
    assert _gauge((await client.get("/metrics")).text, "awaiting_funds") == 1
    error(await client.post(f"/v1/payouts/{payout['id']}/retry", headers=auth(ADMIN, admin=True)),
          409, "INVALID_STATE")  # not failed: the worker tries it again by itself
    await settle(app)
    assert (await _payout(client, auth))["status"] == "awaiting_funds"
    await _books_ok(client, app, auth)

    sandbox.set_balance("NGN", payout_amount + 1)  # funded
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["attempts"], paid["reference"]) == ("paid", 1, payout["reference"])
    assert paid["last_error"] is None
    assert await _payable(app) == 0
    assert sandbox.balances["NGN"] == 0
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"payout_funds_retry_seconds": 0}])
async def test_payouts_go_out_as_far_as_the_balance_covers(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, transfer_log: list[tuple[str, str, int]],  # noqa: F811
) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await buy_shares(client, app, auth, HOLDERS)
    for user_id in HOLDERS:
        await register_payout_account(client, auth(user_id))
    await pay_revenue(client, app, owner, "600.00")
    assert (await distribute(client, owner)).status_code == 201
    owed = {p.user_id: p.amount for p in (await payout_rows(app)).values()}
    funds = owed["holder-a"] + owed["holder-b"]  # not enough for all three
    app.state.sandbox.set_balance("NGN", funds)
    await settle(app)

    statuses = {user: p.status for user, p in (await payout_rows(app)).items()}
    paid = {user for user, status in statuses.items() if status == "paid"}
    waiting = {user for user, status in statuses.items() if status == "awaiting_funds"}
    assert paid and waiting and paid | waiting == set(HOLDERS), statuses
    left = funds - sum(owed[user] for user in paid)
    assert app.state.sandbox.balances["NGN"] == left
    for user in waiting:
        assert owed[user] > left  # each waits only for want of money
        assert await ledger_balance(app, accounts.payable(user, "NGN")) == owed[user]
    await books_ok(client, app, auth, transfer_log)

    app.state.sandbox.set_balance("NGN", sum(owed[user] for user in waiting))
    await settle(app)
    assert {p.status for p in (await payout_rows(app)).values()} == {"paid"}
    await books_ok(client, app, auth, transfer_log)
