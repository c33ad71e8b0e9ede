"""A refund is sent to Paystack at most once; after an unclear answer it is `unknown` until the gateway's
own records say what happened (gateway mode `test`, Paystack answered by respx; and the sandbox's faults)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.core.config import Settings
from app.models import Refund
from app.models.base import utcnow
from tests.helpers import get_payment, invest, pay, put_app
from tests.payments.refund_support import (
    TEST_MODE,
    UNCLEAR_ANSWERS,
    RefundAnswer,
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
ROUNDS = 12


@pytest.fixture
def test_mode_overrides() -> dict[str, Any]:
    # every round asks the gateway again about refunds in doubt; claims are leased for a moment only
    return {"refund_check_interval_seconds": 0, "worker_lease_seconds": 0.05}


@pytest.fixture
async def service(make_settings: Callable[..., Settings], test_mode_overrides: dict[str, Any]
                  ) -> AsyncIterator[ServiceInTestMode]:
    async for opened in open_test_mode_app(make_settings(**TEST_MODE, **test_mode_overrides)):
        yield opened


async def many_rounds(service: ServiceInTestMode, count: int = ROUNDS) -> None:
    """The worker, again and again, each time after every lease and backoff ran out."""
    for _ in range(count):
        await time_passes(service.app)
        await service.rounds(1)


async def _refund_100(service: ServiceInTestMode, auth: Auth, answer: RefundAnswer) -> tuple[dict, dict, dict]:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, deposit = await service.fund(admin, investor)
    service.paystack.refund_answer = answer
    refund = await request_refund(service.client, admin, deposit["id"], "100.00")
    return payment, deposit, refund


@pytest.mark.parametrize("answer", UNCLEAR_ANSWERS)
async def test_a_refund_answered_unclearly_is_sent_once_and_settled_from_the_gateways_list(
    service: ServiceInTestMode, auth: Auth, answer: RefundAnswer
) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    service.paystack.lists_refunds = False  # the gateway's list does not show it yet
    payment, deposit, refund = await _refund_100(service, auth, answer)

    await many_rounds(service)

    assert len(service.paystack.refund_posts) == 1
    [made] = service.paystack.refunds
    assert made.amount == 10000 and made.merchant_note.startswith(refund["id"])
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "unknown"
    assert await in_flight(service.app) == 10000
    assert (await deposit_of(service.client, investor))["refunded"] == "100.00"  # held back, not returned

    service.paystack.lists_refunds = True
    await many_rounds(service, 1)
    seen = await refund_seen(service.client, investor, refund["id"])
    assert (seen["status"], seen["amount"], seen["transaction_id"]) == ("sent", "100.00", deposit["id"])
    assert await in_flight(service.app) == 10000

    made.status = "processed"
    await many_rounds(service, 2)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    assert await in_flight(service.app) == 0
    assert len(service.paystack.refund_posts) == 1
    seen_payment = await get_payment(service.client, investor, payment["reference"])
    assert (seen_payment["status"], seen_payment["refunded_amount"]) == ("partially_refunded", "100.00")
    deposit = await deposit_of(service.client, investor)
    assert (deposit["refunded"], deposit["remaining"]) == ("100.00", "4900.00")
    await integrity_ok(service.client, admin)


async def test_a_worker_that_dies_mid_call_leaves_the_refund_unknown_never_sent_twice(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin = auth("admin-1", admin=True)
    _, _, refund = await _refund_100(service, auth, "hang")

    worker = asyncio.create_task(service.rounds(1))
    await asyncio.wait_for(service.paystack.refund_arrived.wait(), timeout=10)
    worker.cancel()  # the process dies while Paystack is still answering
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    async with service.app.state.runtime.db.unit_of_work() as session:
        row = await session.get(Refund, refund["id"])
        assert row is not None and row.status == "sending"
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "pending"

    service.paystack.refund_answer = "ok"
    service.paystack.lists_refunds = False
    await many_rounds(service)
    assert len(service.paystack.refund_posts) == 1
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "unknown"

    service.paystack.lists_refunds = True
    service.paystack.refunds[0].status = "processed"
    await many_rounds(service, 2)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "processed"
    assert await in_flight(service.app) == 0
    assert len(service.paystack.refund_posts) == 1
    await integrity_ok(service.client, admin)


async def test_an_unknown_refund_the_gateway_never_recorded_fails_after_the_window(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    payment, _, refund = await _refund_100(service, auth, "5xx_only")  # an error, and nothing recorded

    await many_rounds(service)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "unknown"  # within the window

    async with service.app.state.runtime.db.unit_of_work() as session:  # a day goes by
        await session.execute(update(Refund).values(sent_at=utcnow() - timedelta(days=1, seconds=1)))
    await many_rounds(service)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "failed"
    assert len(service.paystack.refund_posts) == 1
    assert service.paystack.refunds == []
    assert await in_flight(service.app) == 0
    deposit = await deposit_of(service.client, investor)
    assert (deposit["refunded"], deposit["remaining"]) == ("0.00", "5000.00")
    escrow = (await service.client.get("/v1/apps/app-1/escrow", headers=admin)).json()["items"][0]
    assert escrow["held"] == "5000.00"
    refunds = (await service.client.get("/v1/escrow/transactions?type=refund", headers=investor)).json()["items"]
    assert [r["status"] for r in refunds] == ["failed"]
    assert (await get_payment(service.client, investor, payment["reference"]))["status"] == "success"
    await integrity_ok(service.client, admin)


async def test_an_unknown_refund_is_not_given_up_while_the_gateway_has_one_it_cannot_be_told_from(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin = auth("admin-1", admin=True)
    _, _, refund = await _refund_100(service, auth, "5xx")
    service.paystack.lists_refunds = False
    await service.rounds(1)
    # the gateway's record of it lost our note: a refund of this amount on this charge that names no refund of ours
    service.paystack.refunds[0].merchant_note = "Refund for transaction by ops@example.com"
    service.paystack.lists_refunds = True
    async with service.app.state.runtime.db.unit_of_work() as session:
        await session.execute(update(Refund).values(sent_at=utcnow() - timedelta(days=2)))

    await many_rounds(service)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "unknown"
    assert await in_flight(service.app) == 10000
    assert len(service.paystack.refund_posts) == 1


async def test_an_unknown_refund_is_not_given_up_on_a_list_too_long_to_read(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin = auth("admin-1", admin=True)
    _, _, refund = await _refund_100(service, auth, "5xx_only")
    service.paystack.list_pages = 1000  # as if the filter were ignored on a busy integration
    await service.rounds(1)
    async with service.app.state.runtime.db.unit_of_work() as session:
        await session.execute(update(Refund).values(sent_at=utcnow() - timedelta(days=2)))

    await many_rounds(service, 2)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "unknown"
    assert await in_flight(service.app) == 10000
    pages = {call.request.url.params["page"] for call in service.paystack.router.calls
             if call.request.url.path.endswith("/refund") and call.request.method == "GET"}
    assert pages == {str(page) for page in range(1, 21)}  # read up to its bound, then left alone


@pytest.mark.parametrize("answer", ["rate_limit", "unreachable"])
async def test_a_refund_paystack_did_not_act_on_is_sent_again_later(
    service: ServiceInTestMode, auth: Auth, answer: RefundAnswer
) -> None:
    admin = auth("admin-1", admin=True)
    _, _, refund = await _refund_100(service, auth, answer)

    await service.rounds(1)
    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "pending"
    assert service.paystack.refunds == []
    service.paystack.refund_answer = "ok"
    await many_rounds(service, 3)

    assert len(service.paystack.refunds) == 1
    seen = await refund_seen(service.client, admin, refund["id"])
    assert seen["status"] == "sent"
    async with service.app.state.runtime.db.unit_of_work() as session:
        row = await session.get(Refund, refund["id"])
        assert row is not None and row.gateway_refund_id == service.paystack.refunds[0].id


async def test_a_rate_limit_ends_the_sending_pass(service: ServiceInTestMode, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    _, deposit, first = await _refund_100(service, auth, "rate_limit")
    second = await request_refund(service.client, admin, deposit["id"], "200.00")

    await service.rounds(1)

    retries = service.app.state.runtime.settings.gateway_max_retries
    assert len(service.paystack.refund_posts) == retries + 1  # the first refund's, with the client's retries
    for refund in (first, second):
        assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "pending"


async def test_a_refund_the_gateway_refuses_fails_and_its_money_goes_back(
    service: ServiceInTestMode, auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    _, _, refund = await _refund_100(service, auth, "refuse")

    await many_rounds(service, 3)

    assert (await refund_seen(service.client, admin, refund["id"]))["status"] == "failed"
    assert len(service.paystack.refund_posts) == 1
    assert await in_flight(service.app) == 0
    assert (await deposit_of(service.client, investor))["remaining"] == "5000.00"
    await integrity_ok(service.client, admin)


# ---- the same unclear answers from the sandbox (gateway mode `sandbox`) ------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"gateway_timeout_seconds": 0.3, "refund_check_interval_seconds": 0, "worker_lease_seconds": 0.05}


async def sandbox_rounds(app: FastAPI, count: int = ROUNDS) -> None:
    for _ in range(count):
        await time_passes(app)
        await app.state.worker.run_once()
        await app.state.sandbox.wait_idle()


@pytest.mark.parametrize("fault", ["timeout_next", "error_after_next", "malformed_next"])
async def test_sandbox_refund_answered_unclearly_is_sent_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, fault: str
) -> None:
    admin, investor = auth("admin-1", admin=True), auth(INVESTOR)
    await put_app(client, admin)
    payment = await invest(client, investor, shares=5)
    await pay(client, app, payment)
    deposit = await deposit_of(client, investor)
    faults = app.state.sandbox.faults
    if fault == "timeout_next":
        faults.timeout_next(path_contains="/refund", delay=1.0)
    else:
        getattr(faults, fault)(path_contains="/refund")

    refund = await request_refund(client, admin, deposit["id"], "100.00")
    await sandbox_rounds(app)

    [made] = app.state.sandbox.refunds.values()
    assert (made.amount, made.status) == (10000, "processed")
    assert made.merchant_note.startswith(refund["id"])
    assert (await refund_seen(client, admin, refund["id"]))["status"] == "processed"
    assert await in_flight(app) == 0
    seen = await get_payment(client, investor, payment["reference"])
    assert (seen["status"], seen["refunded_amount"]) == ("partially_refunded", "100.00")
    await integrity_ok(client, admin)
