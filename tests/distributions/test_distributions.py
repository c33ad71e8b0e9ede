"""Revenue in, distributions out, over HTTP with the sandbox: figures, payouts by bulk transfer, failures, retries."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.money import to_major
from app.ledger import accounts
from app.ledger.service import balance
from app.models import Distribution, DistributionAllocation, JournalEntry, LedgerAccount, Payment, Payout, Posting
from app.models.base import utcnow
from tests.escrow.test_full_path import register_payout_account
from tests.helpers import OWNER, get_payment, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
PERIOD = "2025-03"
ADMIN = "admin-1"


# ---- shared steps (the other distribution tests import these) ----------------------------------------


async def pay_revenue(client: httpx.AsyncClient, app: FastAPI, who: dict[str, str], amount: str,
                      period: str = PERIOD, app_id: str = "app-1") -> dict[str, Any]:
    """A revenue payment paid at the sandbox's checkout and settled."""
    body = {"payment_type": "revenue", "app_id": app_id, "email": "owner@example.com", "currency": "NGN",
            "amount": amount, "period": period}
    response = await client.post("/v1/payments", json=body, headers=who)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert (payment["payment_type"], payment["status"], payment["amount"]) == ("revenue", "pending", amount)
    await pay(client, app, payment)
    return payment


async def buy_shares(client: httpx.AsyncClient, app: FastAPI, auth: Auth, holdings: dict[str, int],
                     app_id: str = "app-1") -> None:
    for user_id, shares in holdings.items():
        await pay(client, app, await invest(client, auth(user_id), app_id=app_id, shares=shares))


async def distribute(client: httpx.AsyncClient, who: dict[str, str], period: str = PERIOD, app_id: str = "app-1",
                     key: str | None = None, **extra: Any) -> httpx.Response:
    headers = {**who, **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/v1/apps/{app_id}/distributions", headers=headers,
                             json={"period": period, "currency": "NGN", **extra})


async def ledger_balance(app: FastAPI, account: str) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await balance(session, account)


async def payout_rows(app: FastAPI) -> dict[str, Payout]:
    """Every payout, by user id (one per user in these tests)."""
    async with app.state.runtime.db.unit_of_work() as session:
        rows = (await session.scalars(select(Payout))).all()
    by_user = {p.user_id: p for p in rows}
    assert len(by_user) == len(rows)
    return by_user


def error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def integrity_ok(client: httpx.AsyncClient, auth: Auth) -> None:
    report = (await client.get("/v1/admin/integrity", headers=auth(ADMIN, admin=True))).json()
    assert report["ok"], report


@pytest.fixture
def transfer_log(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    """Every transfer the sandbox settles: (reference, status, amount), in order. The sandbox keeps only
    the latest transfer per reference, so this is what tells a reference paid twice."""
    state = app.state.sandbox._state
    original = state.settle_transfer
    log: list[tuple[str, str, int]] = []

    def settle_transfer(reference: str) -> Any:
        transfer = original(reference)
        log.append((transfer.reference, transfer.status, transfer.amount))
        return transfer

    monkeypatch.setattr(state, "settle_transfer", settle_transfer)
    return log


@pytest.fixture
def gateway_calls(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """The references the service sent to Paystack, per call: `bulk` (POST /transfer/bulk) and `single`."""
    gateway = app.state.runtime.gateway
    calls: dict[str, list[list[str]]] = {"bulk": [], "single": []}
    bulk, single = gateway.bulk_transfer, gateway.initiate_transfer

    async def bulk_transfer(**kwargs: Any) -> Any:
        calls["bulk"].append([t.reference for t in kwargs["transfers"]])
        return await bulk(**kwargs)

    async def initiate_transfer(**kwargs: Any) -> Any:
        calls["single"].append([kwargs["reference"]])
        return await single(**kwargs)

    monkeypatch.setattr(gateway, "bulk_transfer", bulk_transfer)
    monkeypatch.setattr(gateway, "initiate_transfer", initiate_transfer)
    return calls


async def books_ok(client: httpx.AsyncClient, app: FastAPI, auth: Auth, log: list[tuple[str, str, int]]) -> None:
    """Integrity holds; no reference was paid twice; each paid payout matches one successful transfer; the
    ledger's payout outflow to the gateway is exactly the paid payouts; in flight is what is processing or
    awaiting its OTP."""
    await integrity_ok(client, auth)
    payouts = list((await payout_rows(app)).values())
    succeeded = [(reference, amount) for reference, status, amount in log if status == "success"]
    assert all(count == 1 for count in Counter(reference for reference, _ in succeeded).values()), succeeded
    paid = {p.reference: p.amount for p in payouts if p.status == "paid"}
    assert dict(succeeded) == paid
    async with app.state.runtime.db.unit_of_work() as session:
        outflow = await session.scalar(
            select(func.coalesce(func.sum(Posting.amount), 0))
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(JournalEntry.kind == "payout_paid", LedgerAccount.name == accounts.gateway("NGN"))
        )
        in_flight = await balance(session, accounts.payout_in_flight("NGN"))
    assert outflow == sum(paid.values())
    assert in_flight == sum(p.amount for p in payouts if p.status in ("processing", "awaiting_otp"))


async def snapshot(app: FastAPI) -> dict[str, Any]:
    """What a distribution would change."""
    async with app.state.runtime.db.unit_of_work() as session:
        balances = (await session.execute(select(LedgerAccount.name, LedgerAccount.balance))).all()
        return {
            "distributions": await session.scalar(select(func.count(Distribution.id))),
            "allocations": await session.scalar(select(func.count()).select_from(DistributionAllocation)),
            "payouts": await session.scalar(select(func.count(Payout.id))),
            "entries": await session.scalar(select(func.count(JournalEntry.id))),
            "balances": {name: value for name, value in balances},
        }


# ---- revenue in ---------------------------------------------------------------------------------


async def test_revenue_payment_credits_the_app_revenue_account(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin, owner, investor = auth(ADMIN, admin=True), auth(OWNER), auth("investor-1")
    await put_app(client, admin)
    await buy_shares(client, app, auth, {"investor-1": 2})
    revenue_account = accounts.revenue("app-1", "NGN")

    payment = await pay_revenue(client, app, owner, "10000.00")
    paid = await get_payment(client, owner, payment["reference"])
    assert (paid["status"], paid["period"], paid["app_id"], paid["user_id"]) == ("success", PERIOD, "app-1", OWNER)
    assert await ledger_balance(app, revenue_account) == 1_000_000
    await pay_revenue(client, app, admin, "500.00", period="2025-04")  # an admin may pay it in too
    assert await ledger_balance(app, revenue_account) == 1_050_000

    body = {"payment_type": "revenue", "app_id": "app-1", "email": "x@example.com", "currency": "NGN",
            "amount": "100.00", "period": PERIOD}
    error(await client.post("/v1/payments", json=body, headers=investor), 403, "UNAUTHORIZED")  # a holder, not owner
    error(await client.post("/v1/payments", json=body, headers=auth("stranger")), 403, "UNAUTHORIZED")
    no_period = {k: v for k, v in body.items() if k != "period"}
    error(await client.post("/v1/payments", json=no_period, headers=owner), 422, "VALIDATION_ERROR")
    error(await client.post("/v1/payments", json={**body, "period": "2025-13"}, headers=owner), 422,
          "VALIDATION_ERROR")
    error(await client.post("/v1/payments", json={**body, "period": "03-2025"}, headers=owner), 422,
          "VALIDATION_ERROR")

    async with app.state.runtime.db.unit_of_work() as session:
        revenue_payments = (await session.scalars(select(Payment).where(Payment.payment_type == "revenue"))).all()
    assert sorted((p.user_id, p.amount, p.status) for p in revenue_payments) == [
        (ADMIN, 50_000, "success"), (OWNER, 1_000_000, "success")]
    assert await ledger_balance(app, revenue_account) == 1_050_000
    await integrity_ok(client, auth)


# ---- a distribution, end to end ---------------------------------------------------------------------

HOLDINGS = {"investor-1": 3, "investor-2": 5, "investor-3": 9, "investor-4": 1}  # 18 shares
# 10000.00 of revenue, 2.50% fee (250.00), 9750.00 over 18 shares by largest remainder:
# 1625.00, 2708.33(.33), 4875.00, 541.66(.67) -> the one unit left goes to investor-4.
PARTS = {"investor-1": 162_500, "investor-2": 270_833, "investor-3": 487_500, "investor-4": 54_167}


async def test_distribution_over_http(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, transfer_log: list[tuple[str, str, int]],
    gateway_calls: dict[str, list[list[str]]],
) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)  # platform fee 2.50%
    await buy_shares(client, app, auth, HOLDINGS)
    for user_id in ("investor-1", "investor-2"):
        await register_payout_account(client, auth(user_id))
    await pay_revenue(client, app, owner, "10000.00")
    assert sum(PARTS.values()) == 975_000
    before = await snapshot(app)

    # a dry run answers the figures and writes nothing
    dry = await distribute(client, owner, dry_run=True)
    assert dry.status_code == 200, dry.text
    preview = dry.json()
    assert (preview["id"], preview["status"], preview["dry_run"]) == (None, "dry_run", True)
    assert (preview["amount"], preview["platform_fee"], preview["net_amount"], preview["allocations"]) == (
        "10000.00", "250.00", "9750.00", 4)
    assert {p["user_id"]: (p["shares"], p["amount"]) for p in preview["preview"]} == {
        u: (HOLDINGS[u], to_major(PARTS[u], "NGN")) for u in HOLDINGS}
    assert await snapshot(app) == before

    # more than the undistributed revenue, for real or as a dry run
    error(await distribute(client, owner, amount="10000.01"), 409, "INSUFFICIENT_FUNDS")
    error(await distribute(client, admin, amount="10000.01", dry_run=True), 409, "INSUFFICIENT_FUNDS")
    assert await snapshot(app) == before

    # the real one, under an Idempotency-Key
    started = utcnow()
    created = await distribute(client, owner, key="dist-2025-03")
    finished = utcnow()
    assert created.status_code == 201, created.text
    distribution = created.json()
    assert distribution["id"].startswith("dst_") and distribution["status"] == "completed"
    assert not distribution["dry_run"]
    for field in ("amount", "platform_fee", "net_amount", "allocations", "total_shares", "period", "currency"):
        assert distribution[field] == preview[field], field
    replay = await distribute(client, owner, key="dist-2025-03")
    assert replay.status_code == 201 and replay.json() == distribution
    assert replay.headers.get("Idempotent-Replayed") == "true"
    error(await distribute(client, owner, key="dist-2025-03", amount="1.00"), 422, "IDEMPOTENCY_CONFLICT")

    # one per app, period and currency, checked before anything else (dry run, amount, caller)
    for who, extra in [(owner, {}), (owner, {"dry_run": True}), (admin, {"amount": "99999.00"}),
                       (admin, {"amount": "1.00", "dry_run": True})]:
        second = await distribute(client, who, **extra)
        error(second, 409, "INVALID_STATE")
        assert second.json()["error"]["details"]["distribution_id"] == distribution["id"]
    assert gc.isenabled()  # paused while the distribution's rows were built, after refusals too

    after = await snapshot(app)
    assert (after["distributions"], after["allocations"], after["payouts"]) == (1, 4, 4)
    assert after["entries"] == before["entries"] + 1  # one journal entry for the whole distribution
    assert await ledger_balance(app, accounts.revenue("app-1", "NGN")) == 0
    fees = accounts.platform_fees("NGN")
    assert after["balances"][fees] - before["balances"].get(fees, 0) == 25_000
    for user_id, part in PARTS.items():
        assert await ledger_balance(app, accounts.payable(user_id, "NGN")) == part

    # the allocations, two per page, add up to the net amount to the kobo
    url = f"/v1/distributions/{distribution['id']}/allocations"
    first = (await client.get(url, params={"limit": 2}, headers=owner)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second_page = (await client.get(url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=owner)).json()
    assert len(second_page["items"]) == 2 and second_page["next_cursor"] is None
    allocations = first["items"] + second_page["items"]
    assert [a["user_id"] for a in allocations] == sorted(HOLDINGS)
    assert {a["user_id"]: (a["shares"], a["amount"], a["payout_status"]) for a in allocations} == {
        u: (HOLDINGS[u], to_major(PARTS[u], "NGN"), "pending" if u in ("investor-1", "investor-2")
            else "awaiting_payout_account") for u in HOLDINGS}  # investors 3 and 4 have no payout account
    assert sum(int(a["amount"].replace(".", "")) for a in allocations) == 975_000
    assert to_major(975_000, "NGN") == distribution["net_amount"]

    payouts = await payout_rows(app)
    assert {u: (p.amount, p.reason, p.source_id, p.status) for u, p in payouts.items()} == {
        u: (PARTS[u], "distribution", distribution["id"], "pending") for u in HOLDINGS}
    # written during the request: by the database's clock on PostgreSQL, whose COPY leaves the times out
    for payout in payouts.values():
        for moment in (payout.created_at, payout.updated_at, payout.available_at):
            assert started <= moment <= finished, (payout.user_id, moment, started, finished)

    # holders with a payout account are paid through one bulk transfer
    await settle(app)
    payouts = await payout_rows(app)
    assert {u: p.status for u, p in payouts.items()} == {
        "investor-1": "paid", "investor-2": "paid", "investor-3": "pending", "investor-4": "pending"}
    assert gateway_calls["single"] == []
    assert [sorted(call) for call in gateway_calls["bulk"]] == [
        sorted([payouts["investor-1"].reference, payouts["investor-2"].reference])]
    batch = payouts["investor-1"].batch_reference
    assert batch and payouts["investor-2"].batch_reference == batch
    for user_id in ("investor-1", "investor-2"):
        transfer = app.state.sandbox.transfers[payouts[user_id].reference]
        assert (transfer.status, transfer.amount) == ("success", PARTS[user_id])
        assert await ledger_balance(app, accounts.payable(user_id, "NGN")) == 0

    # the others are owed until they register an account
    for user_id in ("investor-3", "investor-4"):
        [mine] = (await client.get("/v1/payouts/me", headers=auth(user_id))).json()["items"]
        assert (mine["status"], mine["awaiting_payout_account"], mine["reason"]) == (
            "awaiting_payout_account", True, "distribution")
        assert mine["amount"] == to_major(PARTS[user_id], "NGN")
        assert payouts[user_id].batch_reference is None
        assert await ledger_balance(app, accounts.payable(user_id, "NGN")) == PARTS[user_id]
    statuses = {a["user_id"]: a["payout_status"]
                for a in (await client.get(url, headers=admin)).json()["items"]}
    assert statuses == {"investor-1": "paid", "investor-2": "paid", "investor-3": "awaiting_payout_account",
                        "investor-4": "awaiting_payout_account"}

    for user_id in ("investor-3", "investor-4"):
        await register_payout_account(client, auth(user_id))
        await settle(app)
        payout = (await payout_rows(app))[user_id]
        assert (payout.status, payout.attempts) == ("paid", 1)
        assert payout.batch_reference and payout.batch_reference != batch
        assert gateway_calls["bulk"][-1] == [payout.reference]
        assert await ledger_balance(app, accounts.payable(user_id, "NGN")) == 0
    assert gateway_calls["single"] == [] and len(gateway_calls["bulk"]) == 3

    # reading it back
    for who in (owner, admin):
        shown = await client.get(f"/v1/distributions/{distribution['id']}", headers=who)
        assert shown.status_code == 200 and shown.json() == distribution
        listed = (await client.get("/v1/apps/app-1/distributions", headers=who)).json()
        assert listed == {"items": [distribution], "next_cursor": None}
    for user_id in HOLDINGS:
        mine = (await client.get("/v1/distributions/me", headers=auth(user_id))).json()
        assert mine["next_cursor"] is None
        assert mine["items"] == [{
            "distribution_id": distribution["id"], "app_id": "app-1", "period": PERIOD, "shares": HOLDINGS[user_id],
            "amount": to_major(PARTS[user_id], "NGN"), "currency": "NGN", "payout_status": "paid"}]
    assert (await client.get("/v1/distributions/me", headers=owner)).json()["items"] == []

    await books_ok(client, app, auth, transfer_log)
    assert sorted(ref for ref, status, _ in transfer_log if status == "success") == sorted(
        p.reference for p in (await payout_rows(app)).values())


async def test_my_distributions_page_by_distribution(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    """A holder's allocations across several distributions, newest first, one per page."""
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin, platform_fee_percentage="0")
    await buy_shares(client, app, auth, {"investor-1": 1, "investor-2": 3})
    ids = []
    for period in ("2025-01", "2025-02", "2025-03"):
        await pay_revenue(client, app, owner, "100.00", period=period)
        created = await distribute(client, owner, period=period)
        assert created.status_code == 201, created.text
        assert created.json()["platform_fee"] == "0.00"
        ids.append(created.json()["id"])

    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/distributions/me", params=params, headers=auth("investor-1"))).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(i["distribution_id"], i["period"], i["amount"]) for i in seen] == [
        (ids[2], "2025-03", "25.00"), (ids[1], "2025-02", "25.00"), (ids[0], "2025-01", "25.00")]
    listed = (await client.get("/v1/apps/app-1/distributions", headers=owner)).json()["items"]
    assert [d["period"] for d in listed] == ["2025-03", "2025-02", "2025-01"]
    await integrity_ok(client, auth)


# ---- a bulk transfer batch that fails -----------------------------------------------------------------

PAYEES = {"holder-a": 1, "holder-b": 2, "holder-c": 3, "holder-d": 4, "holder-e": 7}  # 17 shares


@pytest.mark.parametrize("settings_overrides", [{"bulk_transfer_batch_size": 2}])
async def test_a_failed_bulk_batch_is_owed_again_and_retried_under_the_same_references(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, transfer_log: list[tuple[str, str, int]],
    gateway_calls: dict[str, list[list[str]]],
) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await buy_shares(client, app, auth, PAYEES)
    for user_id in PAYEES:
        await register_payout_account(client, auth(user_id))
    await pay_revenue(client, app, owner, "3400.00")
    created = await distribute(client, owner)
    assert created.status_code == 201, created.text
    net = 340_000 - 8_500
    assert created.json()["net_amount"] == to_major(net, "NGN")

    app.state.sandbox.faults.fail_next(1, status=400, path_contains="/transfer/bulk")  # the first batch
    await settle(app)

    payouts = await payout_rows(app)
    assert sum(p.amount for p in payouts.values()) == net
    batches: dict[str, list[Payout]] = {}
    for payout in payouts.values():
        assert payout.batch_reference
        batches.setdefault(payout.batch_reference, []).append(payout)
    assert sorted(len(b) for b in batches.values()) == [1, 2, 2]
    assert [len(call) for call in gateway_calls["bulk"]] == [2, 2, 1] and gateway_calls["single"] == []
    failed_refs = set(gateway_calls["bulk"][0])
    failed = [p for p in payouts.values() if p.status == "failed"]
    assert {p.reference for p in failed} == failed_refs
    assert len({p.batch_reference for p in failed}) == 1
    for payout in payouts.values():
        owed = await ledger_balance(app, accounts.payable(payout.user_id, "NGN"))
        if payout.reference in failed_refs:
            assert payout.last_error and "bulk" in payout.last_error
            assert owed == payout.amount  # the money is owed again
            assert payout.reference not in app.state.sandbox.transfers  # nothing reached Paystack
        else:
            assert (payout.status, owed) == ("paid", 0)
    assert await ledger_balance(app, accounts.payout_in_flight("NGN")) == 0
    await books_ok(client, app, auth, transfer_log)

    # an admin retries them: same references, sent again in bulk, paid once
    for payout in failed:
        error(await client.post(f"/v1/payouts/{payout.id}/retry", headers=auth(payout.user_id)), 403, "UNAUTHORIZED")
        retried = await client.post(f"/v1/payouts/{payout.id}/retry", headers=admin)
        assert retried.status_code == 200, retried.text
        assert (retried.json()["status"], retried.json()["reference"]) == ("pending", payout.reference)
    await settle(app)

    payouts = await payout_rows(app)
    assert {p.status for p in payouts.values()} == {"paid"}
    for payout in failed:
        again = payouts[payout.user_id]
        assert (again.reference, again.attempts) == (payout.reference, 2)
        assert again.batch_reference and again.batch_reference != payout.batch_reference
    assert sorted(gateway_calls["bulk"][-1]) == sorted(failed_refs) and gateway_calls["single"] == []
    for payout in payouts.values():
        assert await ledger_balance(app, accounts.payable(payout.user_id, "NGN")) == 0
    paid_again = await client.post(f"/v1/payouts/{failed[0].id}/retry", headers=admin)
    error(paid_again, 409, "INVALID_STATE")
    await settle(app)

    assert Counter(ref for ref, status, _ in transfer_log if status == "success") == Counter(
        {p.reference: 1 for p in payouts.values()})
    assert await ledger_balance(app, accounts.payout_in_flight("NGN")) == 0
    await books_ok(client, app, auth, transfer_log)
    assert sum(amount for _, status, amount in transfer_log if status == "success") == net
    statuses = {a["payout_status"] for a in (await client.get(
        f"/v1/distributions/{created.json()['id']}/allocations", headers=owner)).json()["items"]}
    assert statuses == {"paid"}
