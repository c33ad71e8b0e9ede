"""The business rules GET /v1/admin/integrity (and /readyz's cheap part) check, on both engines.

Each test plants one fault straight in the database, the way a bug or a race would leave it (the
rest of the books kept consistent, so the older checks see nothing), and sees that exact check fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import httpx
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from app.core.money import FULL_PERCENT, allocate, percentage_of
from app.ledger import accounts
from app.ledger.service import move, post
from app.models import EscrowTransaction, Holding, Milestone, Payout, Refund, ReleaseApproval, ReleaseRequest
from app.models.base import new_id
from app.payouts.tasks import send_pending_payouts
from tests.distributions.test_distributions import distribute, pay_revenue
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.helpers import APPROVERS, OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
ADMIN = "admin-1"


@dataclass(frozen=True)
class Books:
    """What the clean flow left, for tests to plant faults in."""

    deposits: dict[str, str]  # investor -> deposit id
    milestones: list[str]  # the first one released, the second completed by nobody yet
    release_id: str


async def release_milestone(client: httpx.AsyncClient, auth: Auth, milestone_id: str) -> str:
    """Ask for, approve and execute a release of a completed milestone; returns its id."""
    created = await client.post("/v1/escrow/releases", headers=auth(OWNER), json={"milestone_id": milestone_id})
    assert created.status_code == 201, created.text
    release_id = created.json()["id"]
    for approver in APPROVERS:
        await approve(client, auth(approver), release_id)
    executed = await client.post(f"/v1/escrow/releases/{release_id}/execute", headers=auth(ADMIN, admin=True))
    assert executed.status_code == 200, executed.text
    return release_id


async def refund(client: httpx.AsyncClient, auth: Auth, deposit_id: str, amount: str) -> dict:
    response = await client.post(f"/v1/escrow/transactions/{deposit_id}/refunds", headers=auth(ADMIN, admin=True),
                                 json={"amount": amount, "reason": "investor asked"})
    assert response.status_code == 201, response.text
    return response.json()


async def clean_books(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> Books:
    """Invest, release, refund, pay revenue in and distribute it, pay out: everything settled."""
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await register_payout_account(client, owner)
    await register_payout_account(client, auth("investor-1"))  # investor-2's share waits for an account
    for investor, shares in (("investor-1", 5), ("investor-2", 3)):
        await pay(client, app, await invest(client, auth(investor), shares=shares))
    first, second = [await milestone(client, owner, "25") for _ in range(2)]
    await complete(client, owner, first["id"])
    release_id = await release_milestone(client, auth, first["id"])
    listed = (await client.get("/v1/escrow/transactions?type=deposit", headers=admin)).json()["items"]
    deposits = {item["investor_id"]: item["id"] for item in listed}
    await refund(client, auth, deposits["investor-2"], "500.00")
    await pay_revenue(client, app, owner, "10000.00")
    assert (await distribute(client, owner)).status_code == 201
    await settle(app)
    return Books(deposits=deposits, milestones=[first["id"], second["id"]], release_id=release_id)


async def integrity(client: httpx.AsyncClient, auth: Auth) -> dict:
    response = await client.get("/v1/admin/integrity", headers=auth(ADMIN, admin=True))
    assert response.status_code == 200, response.text
    return response.json()


async def failing(client: httpx.AsyncClient, auth: Auth) -> dict[str, dict]:
    report = await integrity(client, auth)
    failed = {check["name"]: check["details"] for check in report["checks"] if not check["ok"]}
    assert report["ok"] is (not failed)
    return failed


async def test_a_clean_flow_keeps_every_check_ok(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:
        statuses = {p.status for p in (await session.scalars(select(Payout))).all()}
        refunds = {r.status for r in (await session.scalars(select(Refund))).all()}
    assert statuses == {"paid", "pending"} and refunds == {"processed"}  # the flow went all the way
    report = await integrity(client, auth)
    assert report["ok"], report
    assert {
        "milestone_released_once_per_deposit", "releases_within_milestone_percentages", "releases_approved_as_required",
        "deposits_match_their_release_and_refund_rows", "shares_issued_match_holdings",
        "payouts_match_ledger_movements", "refunds_match_ledger_movements",
        "payout_in_flight_equals_open_payouts", "refund_in_flight_equals_open_refunds",
    } <= {check["name"] for check in report["checks"]}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert "business_integrity" in {check["name"] for check in ready.json()["checks"]}


async def test_a_milestone_released_twice_for_a_deposit_is_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    books = await clean_books(client, app, auth)
    deposit_id = books.deposits["investor-1"]
    async with app.state.runtime.db.unit_of_work() as session:
        deposit = await session.get(EscrowTransaction, deposit_id)
        assert deposit is not None
        again = 125_000  # 25% of 5000.00 a second time, with its money moved as a release moves it
        deposit.released += again
        session.add(EscrowTransaction(
            id=new_id("esc"), type="release", app_id="app-1", investor_id="investor-1", amount=again, currency="NGN",
            status="completed", deposit_id=deposit_id, milestone_id=books.milestones[0], release_id="rel_again",
        ))
        await post(session, kind="release", legs=move(accounts.escrow("app-1", "NGN"),
                                                      accounts.payable(OWNER, "NGN"), again),
                   idempotency_key="release:rel_again")
    failed = await failing(client, auth)
    assert set(failed) == {"milestone_released_once_per_deposit"}
    assert failed["milestone_released_once_per_deposit"]["repeated"] == [
        {"deposit_id": deposit_id, "milestone_id": books.milestones[0], "releases": 2}]


async def test_releases_beyond_the_milestone_percentages_are_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    books = await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:  # 25% went out; the milestones now allow 20%
        await session.execute(update(Milestone).where(Milestone.app_id == "app-1").values(release_percentage=1000))
    failed = await failing(client, auth)
    assert set(failed) == {"releases_within_milestone_percentages"}
    assert {o["deposit_id"] for o in failed["releases_within_milestone_percentages"]["over"]} == set(
        books.deposits.values())



async def test_a_release_executed_without_the_admin_its_amount_needed_is_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    books = await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:  # as if the threshold check had been skipped
        await session.execute(update(ReleaseRequest).where(ReleaseRequest.id == books.release_id)
                              .values(needs_admin=True))
    failed = await failing(client, auth)
    assert set(failed) == {"releases_approved_as_required"}
    assert failed["releases_approved_as_required"]["short"] == [{
        "release_id": books.release_id, "status": "released", "required_approvals": 2, "needs_admin": True,
        "approvals": 2, "admin_approved": False}]


async def test_a_release_executed_with_too_few_approvals_is_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    books = await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:
        await session.execute(delete(ReleaseApproval).where(ReleaseApproval.release_id == books.release_id,
                                                            ReleaseApproval.approver_id == APPROVERS[0]))
    failed = await failing(client, auth)
    assert set(failed) == {"releases_approved_as_required"}
    assert [(o["release_id"], o["approvals"]) for o in failed["releases_approved_as_required"]["short"]] == [
        (books.release_id, 1)]

@given(amounts=st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=8),
       percentage=st.integers(min_value=1, max_value=FULL_PERCENT))
def test_a_release_row_exceeds_its_exact_percentage_by_less_than_the_allowed_rounding(
    amounts: list[int], percentage: int
) -> None:
    """What releases_within_milestone_percentages allows: a release's parts (as `create_release`
    computes them) are each under 1.5 minor units above their deposit's exact percentage."""
    parts = allocate(percentage_of(sum(amounts), percentage), amounts)
    for amount, part in zip(amounts, parts, strict=True):
        assert part - Fraction(amount * percentage, FULL_PERCENT) < Fraction(3, 2)


async def test_deposit_columns_that_disagree_with_their_rows_are_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    books = await clean_books(client, app, auth)
    deposit_id = books.deposits["investor-2"]
    async with app.state.runtime.db.unit_of_work() as session:  # the refund's row says failed, the deposit not
        await session.execute(update(EscrowTransaction).where(
            EscrowTransaction.deposit_id == deposit_id, EscrowTransaction.type == "refund").values(status="failed"))
    failed = await failing(client, auth)
    assert set(failed) == {"deposits_match_their_release_and_refund_rows"}
    [mismatch] = failed["deposits_match_their_release_and_refund_rows"]["mismatched"]
    assert (mismatch["deposit_id"], mismatch["refunded"], mismatch["refund_rows"]) == (deposit_id, 50_000, 0)
    assert mismatch["held"] == 300_000 - 75_000 - 50_000


async def test_shares_issued_that_disagree_with_holdings_are_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:
        await session.execute(update(Holding).where(Holding.user_id == "investor-1")
                              .values(shares=Holding.shares + 1))
    failed = await failing(client, auth)
    assert set(failed) == {"shares_issued_match_holdings"}
    assert failed["shares_issued_match_holdings"]["mismatched"] == [
        {"app_id": "app-1", "shares_issued": 8, "held": 9}]


async def test_a_payout_marked_paid_without_its_movements_is_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:  # investor-2's payout never went out
        payout = await session.scalar(select(Payout).where(Payout.user_id == "investor-2"))
        assert payout is not None and payout.status == "pending"
        payout.status = "paid"
    failed = await failing(client, auth)
    assert set(failed) == {"payouts_match_ledger_movements"}
    assert failed["payouts_match_ledger_movements"]["mismatched"] == [
        {"payout_id": payout.id, "status": "paid", "sent": 0, "paid": 0, "returned": 0, "reversed_after_paid": 0}]


async def test_a_refund_whose_status_disagrees_with_its_movements_is_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:  # processed (and settled), now said failed
        refund_row = await session.scalar(select(Refund))
        assert refund_row is not None and refund_row.status == "processed"
        refund_row.status = "failed"
    failed = await failing(client, auth)
    assert set(failed) == {"refunds_match_ledger_movements"}
    assert failed["refunds_match_ledger_movements"]["mismatched"] == [
        {"refund_id": refund_row.id, "status": "failed", "out": 1, "settled": 1, "returned": 0}]


async def test_movements_of_unknown_payouts_and_refunds_are_caught(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await clean_books(client, app, auth)
    async with app.state.runtime.db.unit_of_work() as session:  # between unguarded accounts: only the keys matter
        for key in ("payout:po_ghost:1:sent", "refund:rfd_ghost:out"):
            await post(session, kind="test", legs=move(accounts.gateway("NGN"), "suspense:test:NGN", 100),
                       idempotency_key=key)
    failed = await failing(client, auth)
    assert set(failed) == {"payouts_match_ledger_movements", "refunds_match_ledger_movements"}
    assert failed["payouts_match_ledger_movements"]["mismatched"] == [
        {"payout_id": "po_ghost", "status": None, "sent": 1, "paid": 0, "returned": 0, "reversed_after_paid": 0}]
    assert failed["refunds_match_ledger_movements"]["mismatched"] == [
        {"refund_id": "rfd_ghost", "status": None, "out": 1, "settled": 0, "returned": 0}]


async def test_payouts_in_flight_that_disagree_with_the_ledger_fail_readiness(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    books = await clean_books(client, app, auth)
    await complete(client, auth(OWNER), books.milestones[1])
    await release_milestone(client, auth, books.milestones[1])
    assert await send_pending_payouts(app.state.runtime) == 1  # in flight; its webhook waits in the inbox
    async with app.state.runtime.db.unit_of_work() as session:
        payout = await session.scalar(select(Payout).where(Payout.status == "processing"))
        assert payout is not None
        payout.amount += 1
    failed = await failing(client, auth)
    assert set(failed) == {"payout_in_flight_equals_open_payouts"}
    assert failed["payout_in_flight_equals_open_payouts"]["mismatched"] == [
        {"account": accounts.payout_in_flight("NGN"), "ledger": payout.amount - 1, "open": payout.amount}]
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["failing"] == ["business_integrity"]
    business = next(c for c in ready.json()["checks"] if c["name"] == "business_integrity")
    assert business["details"]["failing"] == ["payout_in_flight_equals_open_payouts"]


async def test_refunds_in_flight_that_disagree_with_the_ledger_fail_readiness(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    books = await clean_books(client, app, auth)
    pending = await refund(client, auth, books.deposits["investor-1"], "100.00")  # not sent yet
    async with app.state.runtime.db.unit_of_work() as session:
        await session.execute(update(Refund).where(Refund.id == pending["id"]).values(amount=10_001))
    failed = await failing(client, auth)
    assert set(failed) == {"refund_in_flight_equals_open_refunds"}
    assert failed["refund_in_flight_equals_open_refunds"]["mismatched"] == [
        {"account": accounts.refund_in_flight("NGN"), "ledger": 10_000, "open": 10_001}]
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    business = next(c for c in ready.json()["checks"] if c["name"] == "business_integrity")
    assert business["details"]["failing"] == ["refund_in_flight_equals_open_refunds"]
