"""Every change emits its event in its own transaction: each type by the change it reports, with the resource
as the API shows it and the users it is about; a change rolled back leaves no event."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.events.catalogue import EVENT_TYPES
from app.gateway.sandbox import MOUNT_PREFIX
from app.gateway.types import VerifiedTransaction
from app.ledger import accounts
from app.models import EventSubject, OutboundEvent, Payment, Refund
from app.payments.gateway_refunds import queue_refund, settle_refund
from app.payments.service import apply_verifications
from tests.distributions.test_distributions import distribute, pay_revenue
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.events.support import Auth, events_of
from tests.helpers import APPROVERS, OWNER, get_payment, invest, pay, put_app, settle
from tests.shares.test_transfers import offered, transfer_payment

# Tested where their state is: tests/escrow/test_overdue.py and tests/payouts/test_otp.py.
ELSEWHERE = {"milestone.overdue", "payout.awaiting_otp"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"enable_dispute_resolution": True, "escrow_release_threshold": "1000000"}


def verdict(payment: Payment, status: str, amount: int) -> VerifiedTransaction:
    return VerifiedTransaction(
        id=4_000_000_001, status=status, reference=payment.reference, amount=amount, currency=payment.currency,
        paid_at=None, channel="card", gateway_response=None, fees=0, metadata={}, authorization_code=None,
        customer_email=None,
    )


async def payment_row(app: FastAPI, reference: str) -> Payment:
    async with app.state.runtime.db.unit_of_work() as session:
        payment = await session.scalar(select(Payment).where(Payment.reference == reference))
        assert payment is not None
        return payment


async def subjects_of(app: FastAPI, event_id: str) -> set[str]:
    async with app.state.runtime.db.unit_of_work() as session:
        return set((await session.scalars(select(EventSubject.user_id).where(EventSubject.event_id == event_id))).all())


async def test_every_change_emits_its_event(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    rt = app.state.runtime
    admin, owner, investor, other = auth("admin-1", admin=True), auth(OWNER), auth("investor-1"), auth("investor-2")
    await put_app(client, admin)

    # payment.succeeded, deposit.held
    paid = await invest(client, investor, shares=5)
    await pay(client, app, paid)
    # payment.failed
    failing = await invest(client, other, shares=1)
    await pay(client, app, failing, outcome="failed")
    verified = await client.post(f"/v1/payments/{failing['reference']}/verify", headers=other)
    assert verified.json()["error"]["code"] == "PAYMENT_FAILED", verified.text
    # payment.flagged: the gateway reports another amount than the one asked for
    flagged = await payment_row(app, (await invest(client, other, shares=2))["reference"])
    async with rt.db.unit_of_work() as session:
        await apply_verifications(session, rt, [(flagged.reference, verdict(flagged, "success", 1))])

    # release.requested, release.approved, release.executed; payout.paid once the owner can be paid
    first = await milestone(client, owner, "25")
    await complete(client, owner, first["id"])
    release = (await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]})).json()
    for approver in APPROVERS:
        await approve(client, auth(approver), release["id"])
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    await register_payout_account(client, owner)
    await settle(app)
    # payout.failed: the bank sends the paid transfer back
    [payout] = (await client.get("/v1/payouts/me", headers=owner)).json()["items"]
    reversed_ = await client.post(f"{MOUNT_PREFIX}/_control/transfers/{payout['reference']}",
                                  json={"action": "reverse"})
    assert reversed_.status_code == 200, reversed_.text
    await settle(app)
    # release.rejected
    second = await milestone(client, owner, "25")
    await complete(client, owner, second["id"])
    rejected = (await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": second["id"]})).json()
    await approve(client, auth(APPROVERS[0]), rejected["id"], "reject")

    # dispute.opened, dispute.resolved, refund.processed
    [deposit] = (await client.get("/v1/escrow/transactions?type=deposit", headers=investor)).json()["items"]
    dispute = await client.post("/v1/disputes", headers=investor,
                                json={"transaction_id": deposit["id"], "reason": "late", "amount": "1000.00"})
    assert dispute.status_code == 201, dispute.text
    resolved = await client.post(f"/v1/disputes/{dispute.json()['id']}/resolve", headers=admin,
                                 json={"outcome": "refund", "note": "agreed"})
    assert resolved.status_code == 200, resolved.text
    await settle(app)
    # refund.failed: the gateway fails a refund it had taken
    failed_payment = await payment_row(app, failing["reference"])
    async with rt.db.unit_of_work() as session:
        refund = await queue_refund(session, failed_payment, amount=100, source_account=accounts.gateway("NGN"),
                                    return_account=accounts.payable("investor-2", "NGN"), reason="test")
    async with rt.db.unit_of_work() as session:
        row = await session.get(Refund, refund.id, with_for_update=True)
        assert row is not None
        row.status = "sent"  # what the send job leaves once Paystack has the refund
        assert await settle_refund(session, rt, row, "failed", "declined by the bank")

    # distribution.created
    await pay_revenue(client, app, owner, "1000.00", period="2025-05")
    assert (await distribute(client, owner, period="2025-05")).status_code == 201
    # share_transfer.completed
    transfer = await offered(client, investor, buyer_id="investor-3", shares=1, price="1000.00")
    await pay(client, app, await transfer_payment(client, auth("investor-3"), transfer))

    events = await events_of(app)
    assert {event.type for event in events} == set(EVENT_TYPES) - ELSEWHERE
    by_type: dict[str, OutboundEvent] = {}
    for event in events:  # the first of each type
        by_type.setdefault(event.type, event)
    expected = {
        "payment.succeeded": (paid["reference"], "reference", {"investor-1"}),
        "payment.failed": (failing["reference"], "reference", {"investor-2"}),
        "payment.flagged": (flagged.reference, "reference", {"investor-2"}),
        "deposit.held": (paid["reference"], "gateway_reference", {"investor-1", OWNER}),
        "release.requested": (release["id"], "id", {OWNER, *APPROVERS}),
        "release.approved": (release["id"], "id", {OWNER, *APPROVERS}),
        "release.executed": (release["id"], "id", {OWNER, *APPROVERS}),
        "release.rejected": (rejected["id"], "id", {OWNER, *APPROVERS}),
        "payout.paid": (payout["id"], "id", {OWNER}),
        "payout.failed": (payout["id"], "id", {OWNER}),
        "dispute.opened": (dispute.json()["id"], "id", {"investor-1", OWNER}),
        "dispute.resolved": (dispute.json()["id"], "id", {"investor-1", OWNER}),
        "refund.failed": (refund.id, "id", {"investor-2"}),
        "distribution.created": ("2025-05", "period", {OWNER}),
        "share_transfer.completed": (transfer["id"], "id", {"investor-1", "investor-3"}),
    }
    for event_type, (value, key, subjects) in expected.items():
        data = json.loads(by_type[event_type].data)
        assert data[key] == value, event_type
        assert await subjects_of(app, by_type[event_type].id) == subjects, event_type
    statuses = {t: json.loads(by_type[t].data).get("status") for t in by_type}
    assert statuses["payment.succeeded"] == "success" and statuses["payment.failed"] == "failed"
    assert json.loads(by_type["payment.flagged"].data)["flagged"] is True
    assert (statuses["release.approved"], statuses["release.executed"]) == ("approved", "released")
    assert (statuses["refund.processed"], statuses["refund.failed"]) == ("processed", "failed")
    assert (statuses["payout.paid"], statuses["payout.failed"]) == ("paid", "reversed")
    # the resource as the API answers it
    shown = await get_payment(client, investor, paid["reference"])
    sent = json.loads(by_type["payment.succeeded"].data)
    assert {k: sent[k] for k in ("id", "amount", "currency", "paid_at", "app_id", "email")} == {
        k: shown[k] for k in ("id", "amount", "currency", "paid_at", "app_id", "email")}
    # the deposit as it was when held (released from since), and as the API answers what has not changed
    held = json.loads(by_type["deposit.held"].data)
    assert (held["type"], held["status"], held["released"], held["refunded"], held["remaining"]) == (
        "deposit", "held", "0.00", "0.00", held["amount"])
    deposit = (await client.get(f"/v1/escrow/transactions/{held['id']}", headers=investor)).json()
    unchanged = ("id", "app_id", "investor_id", "amount", "currency", "payment_gateway", "gateway_reference",
                 "shares", "created_at")
    assert {k: held[k] for k in unchanged} == {k: deposit[k] for k in unchanged}


async def test_a_flagged_charge_seen_again_the_same_way_is_not_a_new_event(app: FastAPI, client: httpx.AsyncClient,
                                                                           auth: Auth) -> None:
    rt = app.state.runtime
    await put_app(client, auth("admin-1", admin=True))
    payment = await payment_row(app, (await invest(client, auth("investor-1")))["reference"])
    for _ in range(2):
        async with rt.db.unit_of_work() as session:
            await apply_verifications(session, rt, [(payment.reference, verdict(payment, "success", 1))])
    assert len(await events_of(app, "payment.flagged")) == 1


async def test_a_change_rolled_back_leaves_no_event(app: FastAPI, client: httpx.AsyncClient, auth: Auth) -> None:
    rt = app.state.runtime
    await put_app(client, auth("admin-1", admin=True))
    payment = await payment_row(app, (await invest(client, auth("investor-1")))["reference"])

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with rt.db.unit_of_work() as session:
            await apply_verifications(session, rt, [(payment.reference, verdict(payment, "success", payment.amount))])
            await session.flush()
            assert (await session.get(Payment, payment.id)).status == "success"  # type: ignore[union-attr]
            raise Boom  # e.g. the commit fails
    assert (await payment_row(app, payment.reference)).status == "pending"
    assert await events_of(app) == []
    async with rt.db.unit_of_work() as session:
        assert (await session.scalars(select(EventSubject))).all() == []

    async with rt.db.unit_of_work() as session:  # the same change committed: its events exist
        await apply_verifications(session, rt, [(payment.reference, verdict(payment, "success", payment.amount))])
    assert [e.type for e in await events_of(app)] == ["deposit.held", "payment.succeeded"]


async def test_charges_credited_together_each_emit_their_own_events(app: FastAPI, client: httpx.AsyncClient,
                                                                    auth: Auth) -> None:
    """A batch of charges writes its events together: each charge still gets its own, with its own data and
    the users it is about, listed in the order the charges were applied."""
    rt = app.state.runtime
    await put_app(client, auth("admin-1", admin=True))
    payers = ["investor-1", "investor-2", "investor-1"]
    payments = [await payment_row(app, (await invest(client, auth(payer), shares=n + 1))["reference"])
                for n, payer in enumerate(payers)]
    async with rt.db.unit_of_work() as session:
        await apply_verifications(session, rt, [(p.reference, verdict(p, "success", p.amount)) for p in payments])

    succeeded = await events_of(app, "payment.succeeded")
    assert [json.loads(e.data)["reference"] for e in succeeded] == [p.reference for p in payments]
    for event in succeeded:
        data = json.loads(event.data)
        assert data["status"] == "success"
        assert await subjects_of(app, event.id) == {data["user_id"]}
    held = await events_of(app, "deposit.held")
    assert [json.loads(e.data)["gateway_reference"] for e in held] == [p.reference for p in payments]
    for event in held:
        assert await subjects_of(app, event.id) == {json.loads(event.data)["investor_id"], OWNER}
    assert len({e.id for e in [*succeeded, *held]}) == 2 * len(payments)
