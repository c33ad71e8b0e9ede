"""Revenue declarations over HTTP with the sandbox: the investors' pool, the owner's payment of exactly that
pool, its distribution (fee first, largest remainder, once), holdings at the end of the period, corrections,
the monthly report, and bad input."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from app.ledger import accounts
from app.models import Distribution, DistributionAllocation, JournalEntry, Payment, Refund, ShareMovement
from app.models.base import utcnow
from tests.distributions.test_distributions import (
    ADMIN,
    buy_shares,
    distribute,
    error,
    integrity_ok,
    ledger_balance,
    pay_revenue,
    payout_rows,
)
from tests.escrow.test_full_path import register_payout_account
from tests.helpers import OWNER, get_payment, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
PAST = "2025-03"  # a period long over


def this_month() -> str:
    return utcnow().strftime("%Y-%m")


def next_month() -> str:
    now = utcnow()
    return f"{now.year + now.month // 12}-{now.month % 12 + 1:02d}"


async def declare(client: httpx.AsyncClient, who: dict[str, str], gross: str, period: str | None = None,
                  app_id: str = "app-1", key: str | None = None, **extra: Any) -> httpx.Response:
    headers = {**who, **({"Idempotency-Key": key} if key else {})}
    body = {"period": period or this_month(), "currency": "NGN", "gross_revenue": gross,
            "email": "owner@example.com", **extra}
    return await client.post(f"/v1/apps/{app_id}/revenue-declarations", headers=headers, json=body)


async def declared(client: httpx.AsyncClient, who: dict[str, str], gross: str, **kwargs: Any) -> dict[str, Any]:
    response = await declare(client, who, gross, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


async def declarations(client: httpx.AsyncClient, who: dict[str, str], app_id: str = "app-1") -> list[dict[str, Any]]:
    response = await client.get(f"/v1/apps/{app_id}/revenue-declarations", headers=who)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def backdate_holdings(app: FastAPI, to: datetime) -> None:
    """Every share movement so far happened at `to` (the cap table's history is what the pool reads)."""
    async with app.state.runtime.db.unit_of_work() as session:
        await session.execute(update(ShareMovement).values(created_at=to))


async def count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def report(client: httpx.AsyncClient, who: dict[str, str], year: int, fmt: str = "json") -> Any:
    response = await client.get(f"/v1/reports/revenue/monthly?year={year}&app_id=app-1&format={fmt}", headers=who)
    assert response.status_code == 200, response.text
    return response.json() if fmt == "json" else list(csv.DictReader(io.StringIO(response.text)))


# ---- the pool, its payment and its distribution ---------------------------------------------------------


async def test_the_pool_of_five_shares_in_a_thousand_is_collected_and_split_exactly(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    """5 of 1,000 shares held (3 and 2): 10,000.00 earned -> a pool of 50.00 (not 9,750.00), which the owner
    pays; the 2.50% fee (1.25) first, 48.75 split 3:2 -> 29.25 and 19.50."""
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)  # 1,000 shares, platform fee 2.50%
    await buy_shares(client, app, auth, {"investor-1": 3, "investor-2": 2})
    await register_payout_account(client, auth("investor-1"))
    fees_before = await ledger_balance(app, accounts.platform_fees("NGN"))
    month = this_month()

    declaration = await declared(client, owner, "10000.00")

    assert {k: declaration[k] for k in ("app_id", "period", "currency", "gross_revenue", "investor_shares",
                                        "total_shares", "pool", "status")} == {
        "app_id": "app-1", "period": month, "currency": "NGN", "gross_revenue": "10000.00",
        "investor_shares": 5, "total_shares": 1000, "pool": "50.00", "status": "pending"}
    assert declaration["id"] and declaration["created_at"] and declaration["payment_url"]
    payment = await get_payment(client, owner, declaration["payment_reference"])
    assert (payment["amount"], payment["currency"], payment["payment_type"], payment["user_id"], payment["period"]) \
        == ("50.00", "NGN", "revenue_declaration", OWNER, month)
    assert app.state.sandbox.transactions[declaration["payment_reference"]].amount == 5_000  # charged at checkout
    assert await count(app, Distribution) == 0  # nothing shared out before the owner pays

    await pay(client, app, payment)

    [paid] = await declarations(client, owner)
    assert (paid["status"], paid["pool"]) == ("paid", "50.00")
    distribution = (await client.get(f"/v1/distributions/{paid['distribution_id']}", headers=owner)).json()
    assert (distribution["amount"], distribution["platform_fee"], distribution["net_amount"], distribution["period"],
            distribution["total_shares"]) == ("50.00", "1.25", "48.75", month, 5)
    allocations = (await client.get(f"/v1/distributions/{paid['distribution_id']}/allocations",
                                    headers=owner)).json()["items"]
    assert [(a["user_id"], a["shares"], a["amount"]) for a in allocations] == [
        ("investor-1", 3, "29.25"), ("investor-2", 2, "19.50")]
    payouts = await payout_rows(app)
    assert {user: (p.amount, p.reason) for user, p in payouts.items()} == {
        "investor-1": (2_925, "distribution"), "investor-2": (1_950, "distribution")}
    assert payouts["investor-1"].status == "paid"  # it had a payout account
    assert await ledger_balance(app, accounts.payable("investor-2", "NGN")) == 1_950  # owed until it has one
    assert await ledger_balance(app, accounts.platform_fees("NGN")) - fees_before == 125
    assert await ledger_balance(app, accounts.revenue("app-1", "NGN")) == 0

    # applied once, however often the charge is verified again
    verified = await client.post(f"/v1/payments/{payment['reference']}/verify", headers=owner)
    assert verified.status_code == 200, verified.text
    await settle(app)
    assert await count(app, Distribution) == 1
    assert await count(app, JournalEntry, JournalEntry.kind == "distribution") == 1
    assert await count(app, JournalEntry, JournalEntry.kind == "revenue") == 1
    await integrity_ok(client, auth)

    year = int(month[:4])
    [row] = [i for i in (await report(client, owner, year))["items"] if i["month"] == month]
    assert (row["declared_gross_revenue"], row["investor_pool"], row["revenue_collected"], row["distributed"],
            row["platform_fees"], row["recipients"]) == ("10000.00", "50.00", "50.00", "48.75", "1.25", 2)
    [line] = [r for r in await report(client, owner, year, "csv") if r["month"] == month]
    assert (line["declared_gross_revenue"], line["investor_pool"], line["revenue_collected"]) == (
        "10000.00", "50.00", "50.00")


async def test_holdings_at_the_end_of_a_past_period_ignore_shares_bought_after_it(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin = auth(ADMIN, admin=True)
    await put_app(client, admin)
    await buy_shares(client, app, auth, {"investor-1": 30, "investor-2": 20})
    await backdate_holdings(app, datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC))  # bought during March 2025
    await buy_shares(client, app, auth, {"investor-1": 50, "investor-3": 100})  # bought now

    declaration = await declared(client, admin, "10000.00", period=PAST)  # an admin may declare too

    assert (declaration["investor_shares"], declaration["pool"]) == (50, "500.00")
    assert declaration["holdings_as_of"].startswith("2025-03-31T23:59:59.999999")
    assert (await get_payment(client, auth(OWNER), declaration["payment_reference"]))["amount"] == "500.00"
    await pay(client, app, {"payment_url": declaration["payment_url"]})

    [paid] = await declarations(client, auth(OWNER))
    allocations = (await client.get(f"/v1/distributions/{paid['distribution_id']}/allocations",
                                    headers=admin)).json()["items"]
    # 500.00 less 12.50 fee = 487.50, over March's 30 and 20 shares: investor-3 (bought since) gets nothing
    assert [(a["user_id"], a["shares"], a["amount"]) for a in allocations] == [
        ("investor-1", 30, "292.50"), ("investor-2", 20, "195.00")]
    # April 2025 still sees March's holdings; the running month sees every share bought since
    april = await declared(client, admin, "1000.00", period="2025-04")
    assert (april["investor_shares"], april["pool"]) == (50, "50.00")
    running = await declared(client, admin, "1000.00")
    assert (running["investor_shares"], running["pool"]) == (200, "200.00")
    await integrity_ok(client, auth)


async def test_shares_the_owner_holds_are_not_investor_shares(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 10, OWNER: 90})

    declaration = await declared(client, auth(OWNER), "10000.00")

    assert (declaration["investor_shares"], declaration["pool"]) == (10, "100.00")  # 10000.00 x 10 / 1000


async def test_the_pool_is_rounded_down_to_the_kobo(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth(ADMIN, admin=True), total_shares=3)
    await buy_shares(client, app, auth, {"investor-1": 1})

    declaration = await declared(client, auth(OWNER), "1000.00")

    assert declaration["pool"] == "333.33"  # 333.333... never rounded up


async def test_a_pool_of_zero_is_recorded_with_nothing_to_collect(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    owner = auth(OWNER)
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {OWNER: 10})  # only the owner holds shares

    declaration = await declared(client, owner, "10000.00")

    assert (declaration["status"], declaration["pool"], declaration["investor_shares"]) == ("recorded", "0.00", 0)
    assert (declaration["payment_reference"], declaration["payment_url"]) == (None, None)
    assert await count(app, Payment, Payment.payment_type == "revenue_declaration") == 0
    # a correction replaces it like an unpaid one
    corrected = await declared(client, owner, "20000.00")
    assert [(d["id"], d["status"], d["replaced_by"]) for d in await declarations(client, owner)] == [
        (corrected["id"], "recorded", None), (declaration["id"], "replaced", corrected["id"])]
    [row] = [i for i in (await report(client, owner, int(this_month()[:4])))["items"] if i["month"] == this_month()]
    assert (row["declared_gross_revenue"], row["investor_pool"]) == ("20000.00", "0.00")


# ---- corrections ---------------------------------------------------------------------------------------


async def test_a_correction_replaces_an_unpaid_declaration_and_a_late_payment_of_it_is_refunded(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    owner = auth(OWNER)
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 3, "investor-2": 2})
    first = await declared(client, owner, "10000.00")

    second = await declared(client, owner, "20000.00")

    assert (second["status"], second["pool"], second["replaces"]) == ("pending", "100.00", first["id"])
    listed = await declarations(client, owner)
    assert [(d["id"], d["status"], d["replaced_by"]) for d in listed] == [
        (second["id"], "pending", None), (first["id"], "replaced", second["id"])]
    month = this_month()
    [row] = [i for i in (await report(client, owner, int(month[:4])))["items"] if i["month"] == month]
    assert (row["declared_gross_revenue"], row["investor_pool"]) == ("20000.00", "100.00")  # the live one only

    # the first checkout was still open and the owner paid it: it credits nothing and goes back in full
    await pay(client, app, {"payment_url": first["payment_url"]})
    stale = await get_payment(client, owner, first["payment_reference"])
    assert stale["note"] == "revenue declaration replaced; refunded"
    assert await count(app, Distribution) == 0
    assert await count(app, Refund) == 1
    async with app.state.runtime.db.unit_of_work() as session:
        refund = await session.scalar(select(Refund))
    assert refund is not None and (refund.amount, refund.payment_id) == (5_000, stale["id"])
    assert await ledger_balance(app, accounts.revenue("app-1", "NGN")) == 0

    await pay(client, app, {"payment_url": second["payment_url"]})
    [paid, replaced] = await declarations(client, owner)
    assert (paid["status"], replaced["status"]) == ("paid", "replaced")
    async with app.state.runtime.db.unit_of_work() as session:
        amounts = (await session.scalars(select(DistributionAllocation.amount).order_by(
            DistributionAllocation.user_id))).all()
    assert amounts == [5_850, 3_900]  # 100.00 less 2.50 fee, 3:2
    await integrity_ok(client, auth)


async def test_a_paid_declaration_cannot_be_replaced(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    owner = auth(OWNER)
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 5})
    first = await declared(client, owner, "10000.00")
    await pay(client, app, {"payment_url": first["payment_url"]})

    error(await declare(client, owner, "20000.00"), 409, "INVALID_STATE")
    error(await declare(client, auth(ADMIN, admin=True), "1.00"), 409, "INVALID_STATE")

    assert [(d["id"], d["status"]) for d in await declarations(client, owner)] == [(first["id"], "paid")]
    assert await count(app, Payment, Payment.payment_type == "revenue_declaration") == 1  # no checkout opened


async def test_the_same_idempotency_key_declares_once(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    owner = auth(OWNER)
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 5})

    first = await declare(client, owner, "10000.00", key="declare-1")
    again = await declare(client, owner, "10000.00", key="declare-1")
    other = await declare(client, owner, "20000.00", key="declare-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    error(other, 422, "IDEMPOTENCY_CONFLICT")
    assert len(await declarations(client, owner)) == 1


# ---- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"period": "2025-13"}, 422, "VALIDATION_ERROR"),
    ({"period": "2025-3"}, 422, "VALIDATION_ERROR"),
    ({"period": "03-2025"}, 422, "VALIDATION_ERROR"),
    ({"period": "\uff12\uff10\uff12\uff15-03"}, 422, "VALIDATION_ERROR"),  # fullwidth digits
    ({"period": "next month"}, 422, "VALIDATION_ERROR"),
    ({"currency": "GHS"}, 422, "CURRENCY_NOT_SUPPORTED"),
    ({"currency": "XYZ"}, 422, "CURRENCY_NOT_SUPPORTED"),
    ({"currency": "NAIRA"}, 422, "VALIDATION_ERROR"),
    ({"gross_revenue": "0"}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": "0.00"}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": "-100.00"}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": "100.001"}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": "1e5"}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": "NaN"}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": "10000000.01"}, 422, "INVALID_AMOUNT"),  # above MAX_PAYMENT_AMOUNT
    ({"gross_revenue": 1e300}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": None}, 422, "INVALID_AMOUNT"),
    ({"gross_revenue": "1000.00", "email": "not-an-email"}, 422, "VALIDATION_ERROR"),
    ({"amount": "1000.00"}, 422, "VALIDATION_ERROR"),  # unknown field
], ids=str)
async def test_bad_input_is_refused_with_the_envelope(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, change: dict[str, Any], status: int, code: str
) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 5})
    body = {"period": this_month(), "currency": "NGN", "gross_revenue": "10000.00", "email": "o@example.com",
            **change}

    response = await client.post("/v1/apps/app-1/revenue-declarations", headers=auth(OWNER), json=body)

    error(response, status, code)
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert await count(app, Payment, Payment.payment_type == "revenue_declaration") == 0


async def test_a_future_period_a_pool_below_the_minimum_and_no_email_are_refused(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    owner = auth(OWNER)
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 5})

    error(await declare(client, owner, "10000.00", period=next_month()), 422, "VALIDATION_ERROR")
    error(await declare(client, owner, "10000.00", period="2999-01"), 422, "VALIDATION_ERROR")
    below = await declare(client, owner, "9999.00")  # pool 49.99, under Paystack's NGN 50.00 minimum
    error(below, 422, "INVALID_AMOUNT")
    assert below.json()["error"]["details"]["pool"] == "49.99"
    body = {"period": this_month(), "currency": "NGN", "gross_revenue": "10000.00"}  # no email, none in the token
    error(await client.post("/v1/apps/app-1/revenue-declarations", headers=owner, json=body), 422, "VALIDATION_ERROR")
    assert await declarations(client, owner) == []


async def test_revenue_payments_and_a_declaration_of_one_period_are_distributed_apart(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    """A `revenue` payment still pays an investor pool directly, distributed when the owner asks; a paid
    declaration of the same period has its own distribution, and neither takes the other's money."""
    owner = auth(OWNER)
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 3, "investor-2": 2})
    month = this_month()
    await pay_revenue(client, app, owner, "1000.00", period=month)
    declaration = await declared(client, owner, "10000.00")
    await pay(client, app, {"payment_url": declaration["payment_url"]})

    dry_run = await distribute(client, owner, period=month, dry_run=True)
    assert dry_run.status_code == 200, dry_run.text
    assert dry_run.json()["amount"] == "1000.00"  # the revenue payment only: the pool was shared out already
    created = await distribute(client, owner, period=month)
    assert created.status_code == 201, created.text
    error(await distribute(client, owner, period=month), 409, "INVALID_STATE")  # once per period, as before

    shown = (await client.get("/v1/apps/app-1/distributions", headers=owner)).json()["items"]
    assert sorted(d["amount"] for d in shown) == ["1000.00", "50.00"]
    assert await ledger_balance(app, accounts.revenue("app-1", "NGN")) == 0
    listed = (await client.get("/v1/payments", params={"payment_type": "revenue_declaration"}, headers=owner)).json()
    assert [p["reference"] for p in listed["items"]] == [declaration["payment_reference"]]
    await integrity_ok(client, auth)


async def test_a_declaration_payment_is_not_opened_by_post_payments(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    body = {"payment_type": "revenue_declaration", "app_id": "app-1", "email": "owner@example.com",
            "currency": "NGN", "amount": "50.00", "period": PAST}

    error(await client.post("/v1/payments", json=body, headers=auth(OWNER)), 422, "VALIDATION_ERROR")


async def test_the_integrity_check_sees_a_paid_declaration_without_its_distribution(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    owner = auth(OWNER)
    await put_app(client, auth(ADMIN, admin=True))
    await buy_shares(client, app, auth, {"investor-1": 5})
    declaration = await declared(client, owner, "10000.00")
    await pay(client, app, {"payment_url": declaration["payment_url"]})
    await integrity_ok(client, auth)
    async with app.state.runtime.db.unit_of_work() as session:  # as if its distribution had gone to another
        await session.execute(update(Distribution).values(source="rvd_someone_else"))

    report = (await client.get("/v1/admin/integrity", headers=auth(ADMIN, admin=True))).json()

    failed = {c["name"]: c["details"] for c in report["checks"] if not c["ok"]}
    assert set(failed) == {"paid_declarations_distributed_once"}
    assert sorted(failed["paid_declarations_distributed_once"]["mismatched"], key=lambda m: m["declaration_id"]) == [
        {"declaration_id": declaration["id"], "status": "paid", "pool": 5_000, "distributions": 0, "distributed": 0},
        {"declaration_id": "rvd_someone_else", "status": None, "pool": None, "distributions": 1, "distributed": 5_000},
    ]
