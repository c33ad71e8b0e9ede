"""GET /v1/reports/revenue/monthly: its figures are the sums of the rows underneath (payments, declarations,
distributions, allocations, payouts), in JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.core.money import to_major
from app.distributions.router import report_filename
from app.models import Distribution, DistributionAllocation, Payment, Payout, RevenueDeclaration
from tests.distributions.test_declarations import backdate_holdings, declared
from tests.distributions.test_distributions import ADMIN, buy_shares, distribute, error, integrity_ok, pay_revenue
from tests.escrow.test_full_path import register_payout_account
from tests.helpers import OWNER, checkout, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
OWNER_2 = "owner-2"
FIELDS = ["month", "currency", "revenue_collected", "distributed", "platform_fees", "paid_out", "owed", "recipients",
          "declared_gross_revenue", "investor_pool"]
MONEY = FIELDS[2:7]
DECLARED = FIELDS[8:]


@pytest.fixture
async def books(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    """app-1 (2.50% fee): investor-1 3, investor-2 5, investor-3 2 shares; only investor-1 has a payout account.
    app-2 (no fee, owner-2): investor-2 4 shares.
    Revenue app-1: 2025-01 5000.00 + 2500.00, 2025-02 3000.00, 2024-12 1000.00, 2025-03 pending, 2025-04 failed;
    app-2: 2025-01 800.00. Distributed: app-1 2025-01 (all), 2025-02 (1000.00 of it), 2024-12; app-2 2025-01.
    Declared for app-1, with the shares held since November 2024: 2025-05 100000.00 (pool 1000.00, paid and
    distributed); 2025-06 10000.00 replaced by 20000.00 (pool 200.00, unpaid)."""
    admin, owner, owner_2 = auth(ADMIN, admin=True), auth(OWNER), auth(OWNER_2)
    await put_app(client, admin)
    await put_app(client, admin, "app-2", owner_id=OWNER_2, platform_fee_percentage="0")
    await buy_shares(client, app, auth, {"investor-1": 3, "investor-2": 5, "investor-3": 2})
    await buy_shares(client, app, auth, {"investor-2": 4}, app_id="app-2")
    await register_payout_account(client, auth("investor-1"))

    await pay_revenue(client, app, owner, "5000.00", period="2025-01")
    await pay_revenue(client, app, owner, "2500.00", period="2025-01")
    await pay_revenue(client, app, admin, "3000.00", period="2025-02")
    await pay_revenue(client, app, owner, "1000.00", period="2024-12")
    await pay_revenue(client, app, owner_2, "800.00", period="2025-01", app_id="app-2")
    body = {"payment_type": "revenue", "app_id": "app-1", "email": "owner@example.com", "currency": "NGN",
            "amount": "400.00"}
    pending = await client.post("/v1/payments", json={**body, "period": "2025-03"}, headers=owner)
    assert pending.status_code == 201, pending.text
    failed = await client.post("/v1/payments", json={**body, "period": "2025-04"}, headers=owner)
    assert failed.status_code == 201, failed.text
    assert (await checkout(client, failed.json(), "failed")).status_code in (200, 303)

    for who, app_id, period, extra in [
        (owner, "app-1", "2025-01", {}), (admin, "app-1", "2025-02", {"amount": "1000.00"}),
        (owner, "app-1", "2024-12", {}), (owner_2, "app-2", "2025-01", {}),
    ]:
        created = await distribute(client, who, period=period, app_id=app_id, **extra)
        assert created.status_code == 201, created.text
    await settle(app)

    await backdate_holdings(app, datetime(2024, 11, 1, tzinfo=UTC))
    declaration = await declared(client, owner, "100000.00", period="2025-05")
    await pay(client, app, {"payment_url": declaration["payment_url"]})
    await declared(client, owner, "10000.00", period="2025-06")
    await declared(client, owner, "20000.00", period="2025-06")


async def expected_from_rows(app: FastAPI, year: int, app_id: str | None) -> list[dict[str, Any]]:
    """The report recomputed in Python from the payment, distribution, allocation and payout rows."""
    async with app.state.runtime.db.unit_of_work() as session:
        payments = (await session.scalars(
            select(Payment).where(Payment.payment_type.in_(("revenue", "revenue_declaration"))))).all()
        declarations = (await session.scalars(select(RevenueDeclaration))).all()
        distributions = {d.id: d for d in (await session.scalars(select(Distribution))).all()}
        allocations = (await session.scalars(select(DistributionAllocation))).all()
        payouts = {p.id: p for p in (await session.scalars(select(Payout))).all()}
    months = [f"{year}-{m:02d}" for m in range(1, 13)]
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys([*MONEY, "recipients", *DECLARED], 0))

    def counts(row_app: str, period: str | None) -> bool:
        return (app_id is None or row_app == app_id) and period in months

    for p in payments:
        if counts(p.app_id, p.period) and p.status in ("success", "partially_refunded", "refunded"):
            rows[(p.currency, p.period)]["revenue_collected"] += p.amount - p.refunded_amount
    for r in declarations:
        if counts(r.app_id, r.period) and r.status != "replaced":
            rows[(r.currency, r.period)]["declared_gross_revenue"] += r.gross_revenue
            rows[(r.currency, r.period)]["investor_pool"] += r.pool
    for d in distributions.values():
        if counts(d.app_id, d.period):
            rows[(d.currency, d.period)]["distributed"] += d.net_amount
            rows[(d.currency, d.period)]["platform_fees"] += d.platform_fee
    for a in allocations:
        d = distributions[a.distribution_id]
        if counts(d.app_id, d.period):
            payout = payouts.get(a.payout_id) if a.payout_id else None
            if payout is not None:
                assert payout.amount == a.amount and payout.user_id == a.user_id
                if payout.status == "paid":
                    rows[(d.currency, d.period)]["paid_out"] += payout.amount
            rows[(d.currency, d.period)]["recipients"] += 1 if a.amount > 0 else 0
    currencies = sorted({currency for currency, _ in rows}) or ["NGN"]
    return [
        {"month": month, "currency": cur,
         **{f: to_major(rows[(cur, month)][f], cur) for f in MONEY if f != "owed"},
         "owed": to_major(rows[(cur, month)]["distributed"] - rows[(cur, month)]["paid_out"], cur),
         "recipients": rows[(cur, month)]["recipients"],
         **{f: to_major(rows[(cur, month)][f], cur) for f in DECLARED}}
        for cur in currencies for month in months
    ]


async def report(client: httpx.AsyncClient, who: dict[str, str], **params: Any) -> httpx.Response:
    return await client.get("/v1/reports/revenue/monthly", params=params, headers=who)


def by_month(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["month"]: item for item in items}


async def test_figures_are_the_sums_of_the_rows(
    books: None, client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    for who, app_id in [(owner, "app-1"), (admin, "app-1"), (admin, "app-2"), (auth(OWNER_2), "app-2"),
                        (admin, None)]:
        for year in (2025, 2024):
            params: dict[str, Any] = {"year": year, **({"app_id": app_id} if app_id else {})}
            response = await report(client, who, **params)
            assert response.status_code == 200, response.text
            shown = response.json()
            assert (shown["year"], shown["app_id"]) == (year, app_id)
            assert shown["items"] == await expected_from_rows(app, year, app_id), (app_id, year)

    # the same figures written out by hand, so the recomputation above is not trusted blindly
    app_1 = by_month((await report(client, owner, year=2025, app_id="app-1")).json()["items"])
    # 7500.00 in; 187.50 fee; 7312.50 over 10 shares: investor-1 (paid) 2193.75, the others owed
    none_declared = {"declared_gross_revenue": "0.00", "investor_pool": "0.00"}
    assert app_1["2025-01"] == {"month": "2025-01", "currency": "NGN", "revenue_collected": "7500.00",
                                "distributed": "7312.50", "platform_fees": "187.50", "paid_out": "2193.75",
                                "owed": "5118.75", "recipients": 3, **none_declared}
    # 3000.00 in, 1000.00 of it distributed: 25.00 fee, 975.00 net, investor-1 paid 292.50
    assert app_1["2025-02"] == {"month": "2025-02", "currency": "NGN", "revenue_collected": "3000.00",
                                "distributed": "975.00", "platform_fees": "25.00", "paid_out": "292.50",
                                "owed": "682.50", "recipients": 3, **none_declared}
    # 100000.00 declared, 10 of 1,000 shares held by investors: the pool of 1000.00 paid in and distributed
    assert app_1["2025-05"] == {"month": "2025-05", "currency": "NGN", "revenue_collected": "1000.00",
                                "distributed": "975.00", "platform_fees": "25.00", "paid_out": "292.50",
                                "owed": "682.50", "recipients": 3, "declared_gross_revenue": "100000.00",
                                "investor_pool": "1000.00"}
    # the correction counts, the declaration it replaced does not; nothing paid in yet
    assert (app_1["2025-06"]["declared_gross_revenue"], app_1["2025-06"]["investor_pool"],
            app_1["2025-06"]["revenue_collected"]) == ("20000.00", "200.00", "0.00")
    zero = {"revenue_collected": "0.00", "distributed": "0.00", "platform_fees": "0.00", "paid_out": "0.00",
            "owed": "0.00", "recipients": 0, **none_declared}
    for month in ("2025-03", "2025-04", "2025-12"):  # a pending and a failed payment count for nothing
        assert {k: v for k, v in app_1[month].items() if k in zero} == zero, month
    everyone = by_month((await report(client, admin, year=2025)).json()["items"])
    assert (everyone["2025-01"]["revenue_collected"], everyone["2025-01"]["distributed"],
            everyone["2025-01"]["recipients"], everyone["2025-01"]["paid_out"]) == ("8300.00", "8112.50", 4, "2193.75")
    last_year = by_month((await report(client, owner, year=2024, app_id="app-1")).json()["items"])
    assert (last_year["2024-12"]["revenue_collected"], last_year["2024-12"]["distributed"]) == ("1000.00", "975.00")

    # currency filter
    ngn = await report(client, admin, year=2025, currency="ngn")
    assert ngn.json()["items"] == (await report(client, admin, year=2025)).json()["items"]
    ghs = (await report(client, admin, year=2025, currency="GHS")).json()["items"]
    assert len(ghs) == 12 and all(i["currency"] == "GHS" and i["revenue_collected"] == "0.00" for i in ghs)
    await integrity_ok(client, auth)


async def test_csv_has_the_same_numbers(books: None, client: httpx.AsyncClient, auth: Auth) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    for who, params in [(owner, {"app_id": "app-1"}), (admin, {})]:
        as_json = (await report(client, who, year=2025, **params)).json()["items"]
        response = await report(client, who, year=2025, format="csv", **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        reader = csv.DictReader(io.StringIO(response.text))
        assert reader.fieldnames == FIELDS
        expected_name = "revenue-app-1-2025.csv" if params else "revenue-2025.csv"
        assert response.headers["content-disposition"] == f'attachment; filename="{expected_name}"'
        rows = list(reader)
        assert rows == [{k: str(v) for k, v in item.items()} for item in as_json]
        assert len(rows) == 12


async def test_who_may_read_the_report(books: None, client: httpx.AsyncClient, auth: Auth) -> None:
    admin, owner, owner_2 = auth(ADMIN, admin=True), auth(OWNER), auth(OWNER_2)
    assert (await report(client, admin, year=2025)).status_code == 200              # admin: every app
    assert (await report(client, admin, year=2025, app_id="app-2")).status_code == 200
    assert (await report(client, owner, year=2025, app_id="app-1")).status_code == 200  # owner: own app
    assert (await report(client, owner_2, year=2025, app_id="app-2")).status_code == 200
    error(await report(client, owner, year=2025), 403, "UNAUTHORIZED")             # owner: app_id required
    error(await report(client, owner, year=2025, app_id="app-2"), 403, "UNAUTHORIZED")  # not theirs
    error(await report(client, owner_2, year=2025, app_id="app-1"), 403, "UNAUTHORIZED")
    for investor in ("investor-1", "investor-2", "stranger"):
        error(await report(client, auth(investor), year=2025), 403, "UNAUTHORIZED")
        error(await report(client, auth(investor), year=2025, app_id="app-1"), 403, "UNAUTHORIZED")
        error(await report(client, auth(investor), year=2025, app_id="app-1", format="csv"), 403, "UNAUTHORIZED")
    error(await client.get("/v1/reports/revenue/monthly", params={"year": 2025}), 401, "UNAUTHENTICATED")
    error(await report(client, admin, year=2025, app_id="app-missing"), 404, "NOT_FOUND")
    error(await report(client, owner, year=2025, app_id="app-missing"), 404, "NOT_FOUND")
    error(await report(client, admin, year=1999), 422, "VALIDATION_ERROR")
    error(await report(client, admin, year=2025, format="xml"), 422, "VALIDATION_ERROR")


async def test_the_year_defaults_to_the_current_one(client: httpx.AsyncClient, auth: Auth) -> None:
    admin = auth(ADMIN, admin=True)
    await put_app(client, admin)
    this_year = datetime.now(UTC).year

    shown = await report(client, admin)
    assert shown.status_code == 200, shown.text
    assert shown.json()["year"] == this_year
    as_csv = await report(client, admin, app_id="app-1", format="csv")
    assert as_csv.headers["content-disposition"] == f'attachment; filename="revenue-app-1-{this_year}.csv"'


def test_the_csv_file_name_keeps_only_plain_characters() -> None:
    assert report_filename(2025, 'a"b;c\\d é') == "revenue-a_b_c_d__-2025.csv"
    assert report_filename(2025, None) == "revenue-2025.csv"


@pytest.mark.parametrize("currency", ["XYZ", "xyz", "€€€"])
async def test_an_unknown_currency_is_currency_not_supported(
    client: httpx.AsyncClient, auth: Auth, currency: str
) -> None:
    admin = auth(ADMIN, admin=True)
    await put_app(client, admin)
    for params in ({"year": 2026}, {"year": 2026, "app_id": "app-1"}, {"year": 2026, "format": "csv"}):
        response = await report(client, admin, **params, currency=currency)  # was a 500 (MoneyError)
        error(response, 422, "CURRENCY_NOT_SUPPORTED")
        assert response.json()["error"]["details"]["currency"] == currency.upper()
    known = await report(client, admin, year=2026, currency="ngn")  # the one rule: case does not matter
    assert known.status_code == 200, known.text
    assert {item["currency"] for item in known.json()["items"]} == {"NGN"}
