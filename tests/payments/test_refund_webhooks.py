"""Paystack's refund.* webhooks, in the shapes Paystack documents (tests/fixtures/paystack: no refund id,
amounts as strings), posted signed to POST /v1/webhooks/paystack; and refunds no webhook settles, which
the worker settles by asking the gateway (gateway mode `test`, Paystack answered by respx)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select

from app.core.config import Settings
from app.models import Refund, WebhookEvent
from app.webhooks.inbox import dedup_key
from tests.helpers import get_payment, paystack_sample
from tests.payments.refund_support import (
    TEST_MODE,
    ServiceInTestMode,
    deposit_of,
    in_flight,
    integrity_ok,
    open_test_mode_app,
    refund_seen,
    request_refund,
    time_passes,
)

Auth = Callable[..., dict[str, str]]
INVESTOR = "investor-1"


@pytest.fixture
async def service(make_settings: Callable[..., Settings]) -> AsyncIterator[ServiceInTestMode]:
    # The default REFUND_CHECK_INTERVAL_SECONDS: a sent refund waits minutes for its webhook, so what
    # settles it here is the webhook.
    async for opened in open_test_mode_app(make_settings(**TEST_MODE)):
        yield opened


def refund_event(name: str, reference: str, amount: int | str, **changes: Any) -> dict[str, Any]:
    """One of Paystack's documented refund webhook bodies, about a refund of ours."""
    data = paystack_sample(name)["data"]
    assert "transaction_reference" in data and "amount" in data
    data.update(transaction_reference=reference, amount=amount, **changes)
    return data


async def gateway_id(service: ServiceInTestMode, refund_id: str) -> int | None:
    async with service.app.state.runtime.db.unit_of_work() as session:
        row = await session.get(Refund, refund_id)
        assert row is not None
        return row.gateway_refund_id


async def _funded_with_refunds(service: ServiceInTestMode, auth: Auth, *amounts: str) -> tuple[dict, list[dict]]:
    admin = auth("admin-1", admin=True)
    payment, deposit = await service.fund(admin, auth(INVESTOR))
    refunds = [await request_refund(service.client, admin, deposit["id"], amount) for amount in amounts]
    await service.rounds(1)  # sent
    for refund in refunds:
        assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "sent"
    return payment, refunds


async def test_two_partial_refunds_on_one_charge_are_each_settled_by_their_webhook(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, refunds = await _funded_with_refunds(service, auth, "1000.00", "500.00")

    for amount, refund_reference in (("100000", "132013318360"), ("50000", "132013318361")):
        data = refund_event("webhook_refund_processed", payment["reference"], amount, refund_reference=refund_reference)
        assert "id" not in data and isinstance(data["amount"], str)
        response = await service.post_webhook("refund.processed", data)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    await service.rounds(1)

    for refund in refunds:
        assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    assert await in_flight(service.app) == 0
    seen = await get_payment(service.client, investor, payment["reference"])
    assert (seen["status"], seen["refunded_amount"]) == ("partially_refunded", "1500.00")
    assert (await deposit_of(service.client, investor))["refunded"] == "1500.00"
    async with service.app.state.runtime.db.unit_of_work() as session:
        events = (await session.scalars(select(WebhookEvent))).all()
        assert sorted(e.status for e in events) == ["processed", "processed"]
    await integrity_ok(service.client, admin)


async def test_a_refund_event_delivered_twice_settles_once(service: ServiceInTestMode, auth: Auth) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, [refund] = await _funded_with_refunds(service, auth, "1000.00")
    data = refund_event("webhook_refund_processed", payment["reference"], "100000")

    for _ in range(2):
        assert (await service.post_webhook("refund.processed", data)).status_code == 200
        await service.rounds(1)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    assert (await get_payment(service.client, investor, payment["reference"]))["refunded_amount"] == "1000.00"
    async with service.app.state.runtime.db.unit_of_work() as session:
        assert len((await session.scalars(select(WebhookEvent))).all()) == 1
    await integrity_ok(service.client, admin)


async def test_refund_failed_webhook_returns_the_money_to_escrow(service: ServiceInTestMode, auth: Auth) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, [refund] = await _funded_with_refunds(service, auth, "1000.00")

    data = refund_event("webhook_refund_failed", payment["reference"], 100000)
    assert (await service.post_webhook("refund.failed", data)).status_code == 200
    await service.rounds(1)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "failed"
    assert await in_flight(service.app) == 0
    deposit = await deposit_of(service.client, investor)
    assert (deposit["refunded"], deposit["remaining"]) == ("0.00", "5000.00")
    assert (await get_payment(service.client, investor, payment["reference"]))["status"] == "success"
    # a late refund.processed for it changes nothing
    late = refund_event("webhook_refund_processed", payment["reference"], "100000")
    assert (await service.post_webhook("refund.processed", late)).status_code == 200
    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "failed"
    await integrity_ok(service.client, admin)


async def test_refund_needs_attention_webhook_holds_the_refund_until_it_is_processed(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, [refund] = await _funded_with_refunds(service, auth, "1000.00")
    known_id = await gateway_id(service, refund["id"])

    data = refund_event("webhook_refund_needs_attention", payment["reference"], 100000, id=str(known_id))
    assert isinstance(data["id"], str)
    assert (await service.post_webhook("refund.needs-attention", data)).status_code == 200
    await service.rounds(1)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "needs_attention"
    assert (await refund_seen(service.client, investor, refund["id"]))["status"] == "needs_attention"
    assert await in_flight(service.app) == 100000  # still with the gateway
    escrow_refunds = (await service.client.get("/v1/escrow/transactions?type=refund", headers=investor)).json()
    assert [r["status"] for r in escrow_refunds["items"]] == ["pending"]

    done = refund_event("webhook_refund_processed", payment["reference"], "100000")
    assert (await service.post_webhook("refund.processed", done)).status_code == 200
    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    assert await in_flight(service.app) == 0
    await integrity_ok(service.client, admin)


async def test_refund_needs_attention_webhook_about_an_unknown_refund_gives_us_its_id(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin = auth("admin-1", admin=True)
    payment, deposit = await service.fund(admin, auth(INVESTOR))
    service.paystack.refund_answer = "malformed"
    service.paystack.lists_refunds = False
    refund = await request_refund(service.client, admin, deposit["id"], "1000.00")
    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "unknown"

    made = service.paystack.refunds[0]
    data = refund_event("webhook_refund_needs_attention", payment["reference"], 100000, id=str(made.id))
    assert (await service.post_webhook("refund.needs-attention", data)).status_code == 200
    await service.rounds(1)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "needs_attention"
    assert await gateway_id(service, refund["id"]) == made.id
    assert len(service.paystack.refund_posts) == 1


async def test_refund_pending_webhook_tells_an_unknown_refund_was_made(service: ServiceInTestMode, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    payment, deposit = await service.fund(admin, auth(INVESTOR))
    service.paystack.refund_answer = "5xx"
    service.paystack.lists_refunds = False
    refund = await request_refund(service.client, admin, deposit["id"], "1000.00")
    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "unknown"

    data = refund_event("webhook_refund_pending", payment["reference"], "100000")
    assert data["refund_reference"] is None
    assert (await service.post_webhook("refund.pending", data)).status_code == 200
    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "sent"
    assert await gateway_id(service, refund["id"]) is None  # the body names no refund id

    # Asking the gateway later finds it by its merchant_note, and keeps its id.
    service.paystack.lists_refunds = True
    await time_passes(service.app)
    await service.rounds(1)
    assert await gateway_id(service, refund["id"]) == service.paystack.refunds[0].id

    processed = refund_event("webhook_refund_processed", payment["reference"], "100000")
    assert (await service.post_webhook("refund.processed", processed)).status_code == 200
    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    assert len(service.paystack.refund_posts) == 1
    await integrity_ok(service.client, admin)


async def test_refund_webhooks_about_no_refund_of_ours_are_acknowledged_and_ignored(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin = auth("admin-1", admin=True)
    payment, [refund] = await _funded_with_refunds(service, auth, "1000.00")

    bodies = [
        ("refund.processed", paystack_sample("webhook_refund_processed")["data"]),  # a charge we never made
        ("refund.processed", refund_event("webhook_refund_processed", payment["reference"], "7")),  # no such amount
        ("refund.failed", refund_event("webhook_refund_failed", payment["reference"], "a lot")),
        ("refund.needs-attention", paystack_sample("webhook_refund_needs_attention")["data"]),
        ("refund.processed", {"transaction_reference": [payment["reference"]], "amount": {"kobo": 1}, "id": True}),
        ("refund.failed", {"transaction": {"reference": payment["reference"]}, "amount": "9" * 40, "id": "-1"}),
    ]
    for event, data in bodies:
        assert (await service.post_webhook(event, data)).status_code == 200
    await service.rounds(1)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "sent"
    async with service.app.state.runtime.db.unit_of_work() as session:
        events = (await session.scalars(select(WebhookEvent))).all()
        assert [e.status for e in events] == ["ignored"] * len(bodies)
    assert await in_flight(service.app) == 100000


async def test_same_amount_refunds_on_one_charge_are_told_apart_by_the_gateway(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin = auth("admin-1", admin=True)
    payment, refunds = await _funded_with_refunds(service, auth, "500.00", "500.00")
    # Paystack processed the second one only, and says so in a body that does not say which refund it is.
    service.paystack.refunds[1].status = "processed"
    data = refund_event("webhook_refund_processed", payment["reference"], "50000")
    assert (await service.post_webhook("refund.processed", data)).status_code == 200
    await service.rounds(2)

    statuses = [(await refund_seen(service.client, admin, r["id"]))["status"] for r in refunds]
    assert statuses == ["sent", "processed"]
    assert await in_flight(service.app) == 50000
    await integrity_ok(service.client, admin)


async def test_a_sent_refund_no_webhook_settles_is_settled_by_fetching_it(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, [refund] = await _funded_with_refunds(service, auth, "1000.00")
    service.paystack.refunds[0].status = "processing"
    await time_passes(service.app)
    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "sent"

    service.paystack.refunds[0].status = "processed"  # and its webhook is lost
    await time_passes(service.app)
    await service.rounds(1)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    assert await in_flight(service.app) == 0
    assert (await get_payment(service.client, investor, payment["reference"]))["refunded_amount"] == "1000.00"
    fetched = [call.request.url.path for call in service.paystack.router.calls if "/refund/" in call.request.url.path]
    assert fetched and set(fetched) == {f"/paystack/refund/{service.paystack.refunds[0].id}"}
    await integrity_ok(service.client, admin)


async def test_a_sent_refund_is_not_asked_about_before_its_webhook_had_time(
    service: ServiceInTestMode, auth: Auth
) -> None:
    await _funded_with_refunds(service, auth, "1000.00")
    await service.rounds(3)
    assert not [call for call in service.paystack.router.calls if "/refund/" in call.request.url.path]


def test_the_dedup_key_tells_two_refunds_of_one_charge_apart() -> None:
    first = refund_event("webhook_refund_processed", "pay-1", "100000", refund_reference="1")
    second = refund_event("webhook_refund_processed", "pay-1", "50000", refund_reference="2")
    same_amount_other_refund = refund_event("webhook_refund_processed", "pay-1", "100000", refund_reference="3")
    failed = refund_event("webhook_refund_failed", "pay-1", 100000, refund_reference="1")

    keys = {dedup_key("refund.processed", data) for data in (first, second, same_amount_other_refund)}
    assert len(keys) == 3
    assert dedup_key("refund.processed", first) == dedup_key("refund.processed", dict(first))
    assert dedup_key("refund.failed", failed) != dedup_key("refund.processed", first)
