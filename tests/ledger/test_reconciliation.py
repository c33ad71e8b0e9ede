"""GET /v1/admin/reconciliation and the periodic job: the books against the gateway's own records.

In sandbox mode over HTTP against the sandbox's records; in test mode against Paystack's documented
list bodies (respx); the refund comparison on typed records directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from app import wiring
from app.core.config import Settings
from app.gateway.sandbox.records import iso
from app.gateway.types import TransactionRecord, TransferRecord
from app.ledger import accounts
from app.ledger.flows import reconcile_recent
from app.ledger.reconciliation import (
    Difference,
    GatewayRefund,
    Reconciliation,
    compare_charges,
    compare_refunds,
    compare_transfers,
    refund_id_in_note,
)
from app.ledger.service import move, post
from app.main import create_app
from app.models import Payment, Payout, Refund
from app.models.base import new_id, utcnow
from app.runtime import Runtime
from tests.conftest import BASE_URL
from tests.gateway.test_client_lists import page, successful_item, transfer_item
from tests.helpers import OWNER, invest, mock_paystack, paystack_sample
from tests.ledger.test_integrity import clean_books

Auth = Callable[..., dict[str, str]]
ADMIN = "admin-1"
PAYSTACK = "https://api.paystack.test"


async def reconciliation(client: httpx.AsyncClient, auth: Auth, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/admin/reconciliation", params=params, headers=auth(ADMIN, admin=True))
    assert response.status_code == 200, response.text
    return response.json()


def found(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["record"], d["reference"]) for d in report["differences"]}


def ghost_payment(reference: str, **overrides: Any) -> Payment:
    values: dict[str, Any] = {
        "id": new_id("pay"), "reference": reference, "user_id": "investor-1", "app_id": "app-1",
        "payment_type": "investment", "status": "success", "amount": 500_000, "currency": "NGN",
        "email": "investor@example.com", "shares": 5, "refunded_amount": 0, "paid_at": utcnow(), **overrides,
    }
    return Payment(**values)


async def payment_of(app: FastAPI, user_id: str, payment_type: str = "investment") -> Payment:
    async with app.state.runtime.db.unit_of_work() as session:
        payment = await session.scalar(select(Payment).where(Payment.user_id == user_id,
                                                             Payment.payment_type == payment_type))
    assert payment is not None
    return payment


# ---- sandbox mode, over HTTP ------------------------------------------------------------------------


async def test_a_clean_period_reconciles(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await clean_books(client, app, auth)
    assert any(t.status == "success" for t in app.state.sandbox.transfers.values())
    report = await reconciliation(client, auth)
    assert report["ok"] is True and report["differences"] == [], report
    start, end = datetime.fromisoformat(report["from"]), datetime.fromisoformat(report["to"])
    assert end - start == timedelta(days=7) and abs(end - utcnow()) < timedelta(minutes=1)
    today = utcnow().date().isoformat()
    assert (await reconciliation(client, auth, **{"from": today, "to": today}))["ok"] is True


async def test_each_planted_difference_is_reported_with_its_kind(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, settings: Settings
) -> None:
    await clean_books(client, app, auth)
    sandbox = app.state.sandbox
    unpaid = await invest(client, auth("investor-3"), shares=1)  # at the sandbox's checkout, never paid
    async with app.state.runtime.db.unit_of_work() as session:
        session.add(ghost_payment("pay-never-charged"))
        await session.execute(update(Payment).where(Payment.reference == unpaid["reference"])
                              .values(status="success"))
        owner_payout = await session.scalar(select(Payout).where(Payout.user_id == OWNER))
    assert owner_payout is not None and owner_payout.status == "paid"
    # a charge of ours the books never heard of
    initialized = await client.post("/sandbox/paystack/transaction/initialize", json={
        "email": "someone@example.com", "amount": 700_000, "reference": "pay-unknown-here"},
        headers={"Authorization": f"Bearer {settings.paystack_secret_key.get_secret_value()}"})
    assert initialized.status_code == 200, initialized.text
    sandbox.settle_charge("pay-unknown-here", "success", send_webhook=False)
    # the gateway's own records disagree with ours
    sandbox.transactions[(await payment_of(app, "investor-1")).reference].amount += 100
    sandbox.transfers[owner_payout.reference].status = "failed"

    report = await reconciliation(client, auth)

    assert report["ok"] is False
    investor_1 = (await payment_of(app, "investor-1")).reference
    assert found(report) == {
        ("missing_at_gateway", "charge", "pay-never-charged"),
        ("status_differs", "charge", unpaid["reference"]),
        ("missing_in_ledger", "charge", "pay-unknown-here"),
        ("amount_differs", "charge", investor_1),
        ("status_differs", "transfer", owner_payout.reference),
    }
    by_reference = {d["reference"]: d for d in report["differences"]}
    assert by_reference["pay-never-charged"]["gateway"] is None
    assert by_reference["pay-unknown-here"]["ledger"] is None
    assert by_reference["pay-unknown-here"]["gateway"]["amount"] == "7000.00"
    assert by_reference[unpaid["reference"]]["gateway"]["status"] == "ongoing"
    assert (by_reference[investor_1]["ledger"]["amount"], by_reference[investor_1]["gateway"]["amount"]) \
        == ("5000.00", "5001.00")
    transfer = by_reference[owner_payout.reference]
    assert (transfer["ledger"]["status"], transfer["gateway"]["status"]) == ("paid", "failed")
    assert transfer["ledger"]["payout_id"] == owner_payout.id
    # it only reads: nothing of ours changed
    async with app.state.runtime.db.unit_of_work() as session:
        assert (await session.get(Payout, owner_payout.id)).status == "paid"  # type: ignore[union-attr]
    assert (await payment_of(app, "investor-1")).amount == 500_000


async def test_refunds_the_gateway_made_beyond_ours_are_each_reported(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, settings: Settings
) -> None:
    """The fault that refunds at most once closes: one refund of ours, four at the gateway (the same
    refund sent again after unclear answers). Reconciliation names each of the three extra ones."""
    await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:
        [ours_] = (await session.scalars(select(Refund))).all()
        reference = (await session.get(Payment, ours_.payment_id)).reference  # type: ignore[union-attr]
    assert (await reconciliation(client, auth))["ok"] is True
    key = {"Authorization": f"Bearer {settings.paystack_secret_key.get_secret_value()}"}
    for _ in range(3):
        sent_again = await client.post("/sandbox/paystack/refund", headers=key, json={
            "transaction": reference, "amount": ours_.amount, "merchant_note": f"refund {ours_.id}: asked"})
        assert sent_again.status_code == 200, sent_again.text
    await app.state.sandbox.wait_idle()

    report = await reconciliation(client, auth)

    assert report["ok"] is False
    extra = [d for d in report["differences"] if d["record"] == "refund"]
    assert [(d["kind"], d["reference"], d["ledger"]) for d in extra] == [("missing_in_ledger", ours_.id, None)] * 3
    assert {d["gateway"]["amount"] for d in extra} == {"500.00"}
    assert len({d["gateway"]["id"] for d in extra}) == 3


async def test_records_stamped_either_side_of_the_window_edge_are_not_missing(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await clean_books(client, app, auth)
    day = (utcnow() - timedelta(days=3)).date()
    midnight = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    half_second = timedelta(milliseconds=500)
    stamps = {  # payer: (our stamp, the gateway's stamp)
        "investor-1": (midnight - half_second, midnight + half_second),  # ours in the day, Paystack's just after
        "investor-2": (midnight + half_second, midnight - half_second),  # Paystack's in the day, ours just after
        OWNER: (midnight - timedelta(hours=12), midnight + timedelta(hours=6)),  # far apart: asked by reference
    }
    for user_id, (ours, theirs) in stamps.items():
        payment = await payment_of(app, user_id, "revenue" if user_id == OWNER else "investment")
        async with app.state.runtime.db.unit_of_work() as session:
            await session.execute(update(Payment).where(Payment.id == payment.id).values(created_at=ours))
        app.state.sandbox.transactions[payment.reference].created_at = theirs

    report = await reconciliation(client, auth, **{"from": day.isoformat(), "to": day.isoformat()})

    assert report["ok"] is True, report
    assert (report["from"], report["to"]) == (iso(midnight - timedelta(days=1))[:19] + "Z",
                                              iso(midnight)[:19] + "Z")


async def test_reconciliation_is_for_admins_only(client: httpx.AsyncClient, auth: Auth) -> None:
    assert (await client.get("/v1/admin/reconciliation")).status_code == 401
    for who in (auth("investor-1"), auth(OWNER), auth("platform", service=True)):
        response = await client.get("/v1/admin/reconciliation", headers=who)
        assert response.status_code == 403 and response.json()["error"]["code"] == "UNAUTHORIZED"
    assert (await client.get("/v1/admin/reconciliation", headers=auth(ADMIN, admin=True))).status_code == 200


@pytest.mark.parametrize("params", [
    {"from": "last tuesday"}, {"to": "2024-02-30"}, {"from": "2024-03-02", "to": "2024-03-01"},
    {"from": "2024-01-01", "to": "2024-03-01"}, {"from": "2024-01-01T00:00:00\x00"}, {"to": "9" * 41},
])
async def test_a_window_that_cannot_be_reconciled_is_a_validation_error(
    client: httpx.AsyncClient, auth: Auth, params: dict[str, str]
) -> None:
    response = await client.get("/v1/admin/reconciliation", params=params, headers=auth(ADMIN, admin=True))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("settings_overrides", [{"reconciliation_interval_seconds": 0.05}])
async def test_the_worker_reconciles_periodically_and_counts_the_differences(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:  # inside the job's window, which ends 10 min ago
        session.add(ghost_payment("pay-never-charged", created_at=utcnow() - timedelta(hours=1)))
    ran = asyncio.Event()
    results: list[Reconciliation] = []

    async def observed(rt: Runtime) -> Reconciliation:
        results.append(await reconcile_recent(rt))
        ran.set()
        return results[-1]

    monkeypatch.setattr(wiring, "GATEWAY_RECONCILIATION", observed)
    runs_before = REGISTRY.get_sample_value("reconciliation_runs_total") or 0
    stop = asyncio.Event()
    worker = asyncio.create_task(app.state.worker.run_forever(stop))
    try:
        async with asyncio.timeout(20):
            await ran.wait()
    finally:
        stop.set()
        await worker
    assert [(d.kind, d.reference) for d in results[0].differences] == [("missing_at_gateway", "pay-never-charged")]
    assert results[0].window.end - results[0].window.start == timedelta(days=1)
    assert (REGISTRY.get_sample_value("reconciliation_runs_total") or 0) > runs_before
    labels = {"record": "charge", "kind": "missing_at_gateway"}
    assert REGISTRY.get_sample_value("reconciliation_differences", labels) == 1
    assert REGISTRY.get_sample_value("reconciliation_differences", {"record": "transfer", "kind": "status_differs"}) \
        == 0
    assert "reconciliation_differences" in (await client.get("/metrics")).text


# ---- test mode: Paystack's documented list bodies ------------------------------------------------------


@pytest.fixture
def settings_for_paystack(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(payment_gateway_mode="test", paystack_base_url=PAYSTACK)


@pytest.fixture
async def paystack_app(settings_for_paystack: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings_for_paystack)  # no loopback: the client speaks HTTP, which respx answers
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        yield application


@pytest.fixture
def paystack() -> Iterator[respx.MockRouter]:
    with mock_paystack(base_url=PAYSTACK, assert_all_called=True) as router:
        yield router


async def _sent_payout(app: FastAPI, reference: str, status: str, amount: int, transfer_code: str | None) -> None:
    async with app.state.runtime.db.unit_of_work() as session:
        payout = Payout(id=new_id("po"), user_id=OWNER, amount=amount, currency="NGN", status=status,
                        reference=reference, reason="release", source_id="rel_1", recipient_code="RCP_x",
                        transfer_code=transfer_code, attempts=1)
        session.add(payout)
        await post(session, kind="payout_sent", legs=move(accounts.gateway("NGN"), accounts.payout_in_flight("NGN"),
                                                          amount), idempotency_key=f"payout:{payout.id}:1:sent")


async def test_test_mode_reconciles_against_paystacks_list_shapes(
    paystack_app: FastAPI, paystack: respx.MockRouter, auth: Auth
) -> None:
    async with paystack_app.state.runtime.db.unit_of_work() as session:
        # pay-a was charged 30050 plus the customer's fees (403.33 in all); pay-b never reached Paystack
        session.add_all([ghost_payment("pay-a", amount=30_050), ghost_payment("pay-b", amount=5_000)])
    await _sent_payout(paystack_app, "payout-otp-000000000001", "processing", 4_400, "TRF_1ptvuv321ahaa7q")
    await _sent_payout(paystack_app, "payout-paid-00000000001", "paid", 3_300, "TRF_5pr8ypzb0htx0cn")
    async with paystack_app.state.runtime.db.unit_of_work() as session:
        # refund 1 of Paystack's list is ours; refund 2 the books never made
        session.add(Refund(id=new_id("rfd"), payment_id="pay_1", amount=500_000, currency="NGN", status="processed",
                           reason="asked", return_account=accounts.escrow("app-1", "NGN"), gateway_refund_id=1))
    now = iso(utcnow())
    transactions = paystack.get("/transaction").mock(return_value=page(
        [successful_item("pay-a", created_at=now), successful_item("re4lyvq3s3", id=4099260517, created_at=now)],
        total=2, skipped=0, perPage=100, page=1, pageCount=1))
    paystack.get("/transaction/verify/pay-b").mock(return_value=httpx.Response(
        404, json={"status": False, "message": "Transaction reference not found", "type": "validation_error",
                   "code": "transaction_not_found", "meta": {"nextStep": "Check the reference"}}))
    paystack.get("/transfer").mock(return_value=page([
        transfer_item(createdAt=now),  # the older shape: no reference, known by its transfer code
        transfer_item(id=13, transfer_code="TRF_5pr8ypzb0htx0cn", reference="payout-paid-00000000001",
                      amount=3_300, status="failed", createdAt=now),
    ], total=2, skipped=0, perPage=100, page=1, pageCount=1))
    refunds = paystack_sample("refund_list")["data"]
    for item in refunds:
        item["created_at"] = now
    paystack.get("/refund").mock(return_value=page(refunds, total=2, skipped=0, perPage=100, page=1, pageCount=1))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(paystack_app), base_url=BASE_URL) as client:
        report = await reconciliation(client, auth)

    assert found(report) == {
        ("missing_in_ledger", "refund", "2"),
        ("missing_at_gateway", "charge", "pay-b"),
        ("missing_in_ledger", "charge", "re4lyvq3s3"),
        ("status_differs", "transfer", "payout-paid-00000000001"),
    }
    assert transactions.calls[0].request.url.params["status"] == "success"


# ---- the comparisons on typed records -------------------------------------------------------------------

AT = datetime(2026, 1, 5, 12, tzinfo=UTC)


def ours(refund_id: str, status: str = "processed", gateway_id: int | None = 9001, amount: int = 50_000) -> Refund:
    return Refund(id=refund_id, payment_id="pay_1", amount=amount, currency="NGN", status=status, reason="asked",
                  return_account=accounts.escrow("app-1", "NGN"), gateway_refund_id=gateway_id)


def theirs(gateway_id: int, refund_id: str | None, status: str = "processed", amount: int = 50_000,
           minutes: int = 0, currency: str = "NGN") -> GatewayRefund:
    return GatewayRefund(id=gateway_id, refund_id=refund_id, transaction_reference="pay-1", amount=amount,
                         currency=currency, status=status, created_at=AT + timedelta(minutes=minutes))


def kinds(differences: list[Difference]) -> list[tuple[str, str]]:
    return [(d.kind, d.reference) for d in differences]


def test_refunds_that_agree_give_no_difference() -> None:
    assert compare_refunds([theirs(9001, "rfd_a"), theirs(9002, None, status="pending")],
                           [ours("rfd_a", gateway_id=None), ours("rfd_b", status="sent", gateway_id=9002)]) == []


def test_three_extra_refunds_at_the_gateway_for_one_of_ours_are_three_differences() -> None:
    records = [theirs(9001 + i, "rfd_a", minutes=i) for i in range(4)]
    found_ = compare_refunds(records, [ours("rfd_a", gateway_id=9002)])
    assert kinds(found_) == [("missing_in_ledger", "rfd_a")] * 3
    assert sorted(d.gateway["id"] for d in found_ if d.gateway) == [9001, 9003, 9004]  # 9002 is the one we sent
    assert all(d.ledger is None and d.record == "refund" for d in found_)


def test_refund_amount_currency_and_status_differences() -> None:
    assert kinds(compare_refunds([theirs(9001, "rfd_a", amount=60_000)], [ours("rfd_a")])) == [
        ("amount_differs", "rfd_a")]
    assert kinds(compare_refunds([theirs(9001, "rfd_a", currency="GHS")], [ours("rfd_a")])) == [
        ("currency_differs", "rfd_a")]
    # we put the money back in escrow; the gateway paid the customer
    assert kinds(compare_refunds([theirs(9001, "rfd_a")], [ours("rfd_a", status="failed")])) == [
        ("status_differs", "rfd_a")]
    assert kinds(compare_refunds([theirs(9001, "rfd_a", status="failed")], [ours("rfd_a", status="unknown")])) == [
        ("status_differs", "rfd_a")]


def test_refunds_missing_on_either_side() -> None:
    assert kinds(compare_refunds([], [ours("rfd_a", status="sent")])) == [("missing_at_gateway", "rfd_a")]
    assert compare_refunds([], [ours("rfd_a", status="failed", gateway_id=None)]) == []  # refused, never made
    assert kinds(compare_refunds([theirs(9001, None)], [])) == [("missing_in_ledger", "pay-1")]
    assert kinds(compare_refunds([theirs(9001, "rfd_gone")], [])) == [("missing_in_ledger", "rfd_gone")]


def test_our_refund_id_is_read_from_the_merchant_note() -> None:
    refund_id = new_id("rfd")
    assert refund_id_in_note(f"refund {refund_id}: investor asked") == refund_id
    assert refund_id_in_note(refund_id) == refund_id
    assert refund_id_in_note("Refund for transaction pay-1") is None
    assert refund_id_in_note(None) is None


def test_charge_statuses_the_gateway_may_show_for_ours() -> None:
    def charge(status: str) -> TransactionRecord:
        return TransactionRecord(id=1, reference="pay-1", status=status, amount=500_000, requested_amount=None,
                                 currency="NGN", paid_at=AT, created_at=AT)

    refunded = ghost_payment("pay-1", status="refunded")
    assert compare_charges([refunded], [charge("reversed")]) == []
    assert kinds(compare_charges([ghost_payment("pay-1")], [charge("reversed")])) == [("status_differs", "pay-1")]
    assert compare_charges([ghost_payment("pay-1", status="failed")], []) == []


def test_a_transfer_retried_under_its_reference_is_compared_on_its_latest_attempt() -> None:
    payout = Payout(id="po_1", user_id=OWNER, amount=4_400, currency="NGN", status="paid",
                    reference="payout-retried-000000001", transfer_code=None, attempts=2)

    def transfer(status: str, minutes: int) -> TransferRecord:
        return TransferRecord(reference=payout.reference, transfer_code=f"TRF_{minutes}", status=status,
                              amount=4_400, currency="NGN", created_at=AT + timedelta(minutes=minutes))

    assert compare_transfers([payout], [transfer("success", 5), transfer("failed", 0)]) == []
    assert kinds(compare_transfers([payout], [transfer("failed", 5), transfer("success", 0)])) == [
        ("status_differs", payout.reference)]
