"""Refunds under real concurrency: workers sending together, a lease running out while the call is in
flight, a webhook and the gateway check settling the same refund. PostgreSQL only (row locks, SKIP
LOCKED); without TEST_DATABASE_URL these tests are skipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import func, select

from app.core.config import Settings
from app.models import JournalEntry, Refund
from app.payments.gateway_refunds import settle_refund
from app.payments.tasks import check_refunds, send_pending_refunds
from app.webhooks.tasks import process_inbox
from tests.conftest import requires_postgres
from tests.helpers import get_payment, paystack_sample
from tests.payments.refund_support import (
    TEST_MODE,
    ServiceInTestMode,
    in_flight,
    integrity_ok,
    open_test_mode_app,
    refund_seen,
    request_refund,
    time_passes,
)

pytestmark = requires_postgres
Auth = Callable[..., dict[str, str]]
INVESTOR = "investor-1"


@pytest.fixture
async def service(make_settings: Callable[..., Settings]) -> AsyncIterator[ServiceInTestMode]:
    settings = make_settings(**TEST_MODE, refund_check_interval_seconds=0, worker_lease_seconds=0.05)
    async for opened in open_test_mode_app(settings):
        yield opened


async def _refunds(service: ServiceInTestMode, auth: Auth, count: int) -> tuple[dict, list[dict]]:
    admin = auth("admin-1", admin=True)
    payment, deposit = await service.fund(admin, auth(INVESTOR))
    return payment, [await request_refund(service.client, admin, deposit["id"], "100.00") for _ in range(count)]


async def test_workers_sending_together_send_each_refund_once(service: ServiceInTestMode, auth: Auth) -> None:
    _, refunds = await _refunds(service, auth, 8)
    rt = service.app.state.runtime

    await asyncio.gather(*(send_pending_refunds(rt) for _ in range(4)))

    notes = sorted(post["merchant_note"].split()[0] for post in service.paystack.refund_posts)
    assert notes == sorted(r["id"] for r in refunds)
    for refund in refunds:
        assert (await refund_seen(service.client, auth("admin-1", admin=True), refund["id"]))["status"] == "sent"


async def test_a_lease_running_out_mid_call_never_leads_to_a_second_send(
    service: ServiceInTestMode, auth: Auth
) -> None:
    await _refunds(service, auth, 4)
    rt = service.app.state.runtime
    service.paystack.refund_answer = "stall"  # each call outlives its 0.05 s lease

    async def checker() -> None:
        for _ in range(40):
            await time_passes(service.app)
            await check_refunds(rt)
            await asyncio.sleep(0.02)

    await asyncio.gather(send_pending_refunds(rt), send_pending_refunds(rt), checker(), checker())
    for _ in range(3):  # later ticks: a sender that found every row locked for a moment stopped early
        await time_passes(service.app)
        await send_pending_refunds(rt)
        await check_refunds(rt)

    assert len(service.paystack.refund_posts) == 4
    assert len(service.paystack.refunds) == 4
    async with rt.db.unit_of_work() as session:
        statuses = (await session.scalars(select(Refund.status))).all()
    assert statuses == ["sent"] * 4  # each found in the gateway's list, whichever came first


async def test_a_webhook_and_the_gateway_check_settle_a_refund_once(service: ServiceInTestMode, auth: Auth) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, refunds = await _refunds(service, auth, 5)
    rt = service.app.state.runtime
    await send_pending_refunds(rt)
    for made, refund_reference in zip(service.paystack.refunds, "abcde", strict=True):
        made.status = "processed"
        data = paystack_sample("webhook_refund_processed")["data"]
        data.update(transaction_reference=payment["reference"], amount=str(made.amount),
                    refund_reference=refund_reference)
        assert (await service.post_webhook("refund.processed", data)).status_code == 200
    await time_passes(service.app)

    # Refunds of one amount on one charge: each webhook is ambiguous, so the gateway check decides them,
    # racing the inbox, the other checker, and a direct settle.
    async def settle_directly() -> None:
        async with rt.db.unit_of_work() as session:
            row = await session.get(Refund, refunds[0]["id"], with_for_update=True)
            assert row is not None
            await settle_refund(session, rt, row, "processed")

    await asyncio.gather(process_inbox(rt), check_refunds(rt), check_refunds(rt), settle_directly())
    await time_passes(service.app)
    await check_refunds(rt)

    for refund in refunds:
        assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    async with rt.db.unit_of_work() as session:
        settled = await session.scalar(
            select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "refund_settled"))
    assert settled == 5
    assert await in_flight(service.app) == 0
    assert (await get_payment(service.client, investor, payment["reference"]))["refunded_amount"] == "500.00"
    await integrity_ok(service.client, admin)
