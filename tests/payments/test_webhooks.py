"""Paystack webhooks over HTTP: signature on the raw bytes, the IP allow-list, the inbox, and crediting once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DataError, OperationalError

from app.core.config import Settings
from app.gateway.errors import GatewayRejected, GatewayTimeout, GatewayUnavailable
from app.gateway.signature import sign
from app.ledger import accounts
from app.main import create_app
from app.models import JournalEntry, LedgerAccount, WebhookEvent
from app.models.base import utcnow
from app.runtime import Runtime
from app.webhooks import inbox
from app.webhooks import tasks as webhook_tasks
from app.webhooks.inbox import Arrival, MalformedEvent, RetryLater, store_events
from tests.conftest import BASE_URL, TEST_DATABASE_URL
from tests.helpers import get_payment, group_commits, invest, put_app

WEBHOOK = "/v1/webhooks/paystack"
PAYSTACK_IP = "52.31.139.75"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Keep the reconciler away from fresh payments: what gets credited here is the webhook's doing.
    return {"reconcile_pending_after_seconds": 3600}


def encode(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as Paystack sends it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def secret(app: FastAPI) -> str:
    return app.state.runtime.settings.paystack_secret_key.get_secret_value()


async def post_signed(
    client: httpx.AsyncClient, app: FastAPI, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        WEBHOOK,
        content=body,
        headers={
            "content-type": "application/json",
            "x-paystack-signature": sign(body, secret(app)),
            **(headers or {}),
        },
    )


def charge_success(app: FastAPI, reference: str) -> bytes:
    """The body Paystack sends for a charge the sandbox has settled."""
    return encode({"event": "charge.success", "data": app.state.sandbox.transactions[reference].verify_data()})


async def webhook_rows(app: FastAPI) -> list[WebhookEvent]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))).all())


async def ledger_balance(app: FastAPI, account: str) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await session.scalar(select(LedgerAccount.balance).where(LedgerAccount.name == account)) or 0


async def journal_entries(app: FastAPI) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await session.scalar(select(func.count()).select_from(JournalEntry)) or 0


async def deposits(client: httpx.AsyncClient, admin: dict[str, str], app_id: str = "app-1") -> list[dict[str, Any]]:
    response = await client.get("/v1/escrow/transactions", params={"app_id": app_id, "type": "deposit"}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def charge_success_handled_by(rt: Runtime, monkeypatch: pytest.MonkeyPatch,
                              handler: Callable[[Runtime, dict[str, Any]], Awaitable[str]]) -> None:
    """`handler` takes `charge.success` events, and a failed event waits an hour before another attempt, so
    a test's drains end inside that hour however slow the machine."""
    handlers = inbox.EventHandlers({**rt.extension(inbox.EventHandlers).by_event, "charge.success": handler})
    monkeypatch.setattr(rt, "extensions", rt.extensions.replacing(handlers))
    monkeypatch.setattr(webhook_tasks.outbox, "backoff", lambda attempts, *, first, most: timedelta(hours=1))


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)


async def test_signed_charge_success_credits_the_payment(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=4)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)

    response = await post_signed(client, app, charge_success(app, payment["reference"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    # stored, not yet applied: the worker does that
    assert (await get_payment(client, investor, payment["reference"]))["status"] == "pending"

    await app.state.worker.drain()

    paid = await get_payment(client, investor, payment["reference"])
    assert paid["status"] == "success"
    assert paid["flagged"] is False
    [deposit] = await deposits(client, admin)
    assert deposit["amount"] == "4000.00" and deposit["gateway_reference"] == payment["reference"]
    assert await ledger_balance(app, accounts.escrow("app-1", "NGN")) == 400000
    holdings = (await client.get("/v1/holdings/me", headers=investor)).json()["items"]
    assert [(h["app_id"], h["shares"]) for h in holdings] == [("app-1", 4)]
    assert [(row.event, row.status) for row in await webhook_rows(app)] == [("charge.success", "processed")]
    assert (await client.get("/v1/admin/integrity", headers=admin)).json()["ok"]


async def _paid_charge_in_the_inbox(
    client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str], investor: dict[str, str]
) -> str:
    """An investment paid at the gateway whose charge.success waits in the inbox; returns its reference."""
    await put_app(client, admin)
    payment = await invest(client, investor, shares=2)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
    assert (await post_signed(client, app, charge_success(app, payment["reference"]))).status_code == 200
    return str(payment["reference"])


async def test_an_event_claimed_by_a_worker_that_died_waits_for_its_lease_then_is_credited_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    rt = app.state.runtime
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    reference = await _paid_charge_in_the_inbox(client, app, admin, investor)

    [claimed] = await webhook_tasks._claim(rt, 10)  # and the worker holding it dies here
    assert (claimed.event, claimed.attempts) == ("charge.success", 1)
    assert await webhook_tasks.process_inbox(rt) == 0  # another worker leaves it alone during the lease
    [row] = await webhook_rows(app)
    assert (row.status, row.attempts) == ("processing", 1)
    assert row.available_at > utcnow() + timedelta(seconds=rt.settings.worker_lease_seconds / 2)

    async with rt.db.unit_of_work() as session:  # the lease runs out
        await session.execute(update(WebhookEvent).values(available_at=utcnow() - timedelta(seconds=1)))
    assert await webhook_tasks.process_inbox(rt) == 1
    assert await webhook_tasks.process_inbox(rt) == 0
    [row] = await webhook_rows(app)
    assert (row.status, row.attempts) == ("processed", 2)
    assert (await get_payment(client, investor, reference))["status"] == "success"
    assert len(await deposits(client, admin)) == 1


@pytest.mark.parametrize("late_outcome", [
    ("pending", "GatewayTimeout('Paystack did not answer within 10.0s')"),
    ("failed", "GatewayRejected('Paystack answered HTTP 400')"),
], ids=["retry", "failed"])
async def test_a_worker_whose_lease_ran_out_leaves_the_outcome_of_the_worker_that_took_over(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]],
    caplog: pytest.LogCaptureFixture, late_outcome: tuple[str, str],
) -> None:
    rt = app.state.runtime
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    reference = await _paid_charge_in_the_inbox(client, app, admin, investor)

    [slow] = await webhook_tasks._claim(rt, 10)  # a worker waiting on a slow gateway past its lease
    async with rt.db.unit_of_work() as session:
        await session.execute(update(WebhookEvent).values(available_at=utcnow() - timedelta(seconds=1)))
    assert await webhook_tasks.process_inbox(rt) == 1  # another worker takes the event over and credits it
    await webhook_tasks._finish(rt, [slow], [late_outcome])  # the first one's call ends at last

    [row] = await webhook_rows(app)
    assert (row.status, row.attempts, row.last_error) == ("processed", 2, None)
    assert "1 of 1 webhook events were taken by another worker" in caplog.text
    assert await webhook_tasks.process_inbox(rt) == 0
    assert (await get_payment(client, investor, reference))["status"] == "success"
    assert len(await deposits(client, admin)) == 1


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's kept plans: needs PostgreSQL (set TEST_DATABASE_URL)")
async def test_a_claim_takes_no_more_events_than_it_asks_for_after_polling_an_empty_inbox(app: FastAPI) -> None:
    """After a few runs PostgreSQL may keep one plan for a prepared statement, made with the statistics of
    then. A worker polling an empty inbox got a plan that, once a burst had filled the inbox, ran the claim's
    locking subquery again for every row: a claim took every due event whatever its limit (1,171 of 256 in
    the webhook benchmark), more than a lease covers, leaving other workers nothing."""
    rt = app.state.runtime
    async with rt.db.unit_of_work() as session:
        await session.execute(text("ANALYZE webhook_events"))  # the statistics of an empty inbox
    for _ in range(8):  # the worker polls
        assert await webhook_tasks._claim(rt, 10) == []
    async with rt.db.unit_of_work() as session:
        await store_events(session, [Arrival("charge.success", {"id": i, "reference": f"r{i}"}) for i in range(300)])

    claimed = await webhook_tasks._claim(rt, 10)

    rows = await webhook_rows(app)
    assert [event.id for event in claimed] == [row.id for row in rows[:10]]  # the oldest ten
    assert [row.status for row in rows] == ["processing"] * 10 + ["pending"] * 290


def _bad_signatures(body: bytes, key: str) -> dict[str, dict[str, Any]]:
    """Header sets that must all be refused for `body` (`key` is the real secret)."""
    return {
        "tampered_body": {"x-paystack-signature": sign(body.replace(b'"amount":', b'"amount":1', 1), key)},
        "wrong_key": {"x-paystack-signature": sign(body, "sk_test_someone_else_0000000000000000000000")},
        "missing": {},
        "empty": {"x-paystack-signature": ""},
        "not_hex": {"x-paystack-signature": "z" * 128},
        "too_short": {"x-paystack-signature": sign(body, key)[:64]},
        "too_long": {"x-paystack-signature": sign(body, key) + "00"},
        "non_ascii": {"x-paystack-signature": ("é" * 128).encode("latin-1")},
    }


@pytest.mark.parametrize(
    "case", ["tampered_body", "wrong_key", "missing", "empty", "not_hex", "too_short", "too_long", "non_ascii"]
)
async def test_bad_signature_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]], case: str
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=2)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
    body = charge_success(app, payment["reference"])

    headers = _bad_signatures(body, secret(app))[case]
    response = await client.post(WEBHOOK, content=body, headers={"content-type": "application/json", **headers})

    assert_error(response, 400, "INVALID_SIGNATURE")
    assert await webhook_rows(app) == []
    await app.state.worker.drain()
    assert (await get_payment(client, investor, payment["reference"]))["status"] == "pending"
    assert await deposits(client, admin) == []


async def test_duplicate_deliveries_are_acknowledged_and_credited_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=3)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
    body = charge_success(app, payment["reference"])

    for _ in range(3):
        response = await post_signed(client, app, body)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}
    assert len(await webhook_rows(app)) == 1

    await app.state.worker.drain()
    # and once more after it was applied: still acknowledged, still nothing new
    assert (await post_signed(client, app, body)).status_code == 200
    await app.state.worker.drain()

    assert len(await webhook_rows(app)) == 1
    assert (await get_payment(client, investor, payment["reference"]))["status"] == "success"
    assert len(await deposits(client, admin)) == 1
    assert await ledger_balance(app, accounts.escrow("app-1", "NGN")) == 300000
    holdings = (await client.get("/v1/holdings/me", headers=investor)).json()["items"]
    assert [h["shares"] for h in holdings] == [3]
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_issued"] == 3


async def test_webhooks_arriving_together_are_each_stored_once_and_credited_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin)
    payments = [await invest(client, auth(f"investor-{i}"), shares=1 + i) for i in range(4)]
    bodies = []
    for payment in payments:
        app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
        bodies.append(charge_success(app, payment["reference"]))

    intake, credit = group_commits("webhook_intake_batch_size"), group_commits("payments_credit_batch_size")
    # each delivered twice, all at once: they share the inbox's transactions
    responses = await asyncio.gather(*(post_signed(client, app, body) for body in bodies + bodies))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert sorted(row.dedup_key for row in await webhook_rows(app)) == sorted(
        f"charge.success:{app.state.sandbox.transactions[p['reference']].verify_data()['id']}" for p in payments)

    await app.state.worker.drain()
    assert len(await deposits(client, admin)) == 4
    assert await ledger_balance(app, accounts.escrow("app-1", "NGN")) == 100000 * (1 + 2 + 3 + 4)
    assert (await client.get("/v1/apps/app-1", headers=admin)).json()["shares_issued"] == 10
    # the metrics count the jobs and the transactions that carried them: 8 arrivals in at least 2 (a
    # webhook and its copy never share one), 4 charges credited in at most 4
    intake_batches, stored = (after - before for after, before in
                              zip(group_commits("webhook_intake_batch_size"), intake, strict=True))
    credit_batches, credited = (after - before for after, before in
                                zip(group_commits("payments_credit_batch_size"), credit, strict=True))
    assert stored == 8 and 2 <= intake_batches <= 8
    assert credited == 4 and 1 <= credit_batches <= 4



async def test_unknown_event_is_stored_and_ignored(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=2)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
    entries_before = await journal_entries(app)

    data = dict(app.state.sandbox.transactions[payment["reference"]].verify_data())
    response = await post_signed(client, app, encode({"event": "subscription.create", "data": data}))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    [row] = await webhook_rows(app)
    assert (row.event, row.status) == ("subscription.create", "pending")

    await app.state.worker.drain()

    [row] = await webhook_rows(app)
    assert (row.event, row.status) == ("subscription.create", "ignored")
    assert (await get_payment(client, investor, payment["reference"]))["status"] == "pending"
    assert await deposits(client, admin) == []
    assert await journal_entries(app) == entries_before
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_issued"] == 0


@pytest.mark.parametrize(("field", "value", "reason_part"), [("amount", 150000, "1500"), ("currency", "GHS", "GHS")])
async def test_gateway_disagreeing_on_amount_or_currency_flags_instead_of_crediting(
    client: httpx.AsyncClient,
    app: FastAPI,
    auth: Callable[..., dict[str, str]],
    field: str,
    value: Any,
    reason_part: str,
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=2)  # NGN 2,000.00 = 200000 kobo expected
    reference = payment["reference"]
    # The gateway ends up charging something else than we asked for.
    setattr(app.state.sandbox.transactions[reference], field, value)
    app.state.sandbox.settle_charge(reference, "success", send_webhook=False)
    # ... while the (signed) webhook body claims exactly what we expected: only verify's answer counts.
    data = dict(app.state.sandbox.transactions[reference].verify_data(), amount=200000, currency="NGN")

    response = await post_signed(client, app, encode({"event": "charge.success", "data": data}))
    assert response.status_code == 200, response.text
    await app.state.worker.drain()

    flagged = await get_payment(client, investor, reference)
    assert flagged["status"] == "pending"
    assert flagged["flagged"] is True
    assert flagged["flag_reason"] and reason_part in flagged["flag_reason"]
    assert await deposits(client, admin) == []
    assert await ledger_balance(app, accounts.escrow("app-1", "NGN")) == 0
    assert (await client.get("/v1/holdings/me", headers=investor)).json()["items"] == []
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_issued"] == 0

    # the client's verify call gets the same verdict
    verified = await client.post(f"/v1/payments/{reference}/verify", headers=investor)
    assert verified.status_code == 200
    assert verified.json()["status"] == "pending" and verified.json()["flagged"] is True
    assert await deposits(client, admin) == []


async def test_charge_success_the_gateway_does_not_confirm_credits_nothing(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    """A correctly signed body is still not proof of payment: verify says the charge is not paid."""
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=2)
    data = dict(app.state.sandbox.transactions[payment["reference"]].verify_data(), status="success")

    assert (await post_signed(client, app, encode({"event": "charge.success", "data": data}))).status_code == 200
    await app.state.worker.drain()

    assert (await get_payment(client, investor, payment["reference"]))["status"] == "pending"
    assert await deposits(client, admin) == []


@pytest.mark.parametrize("case", ["foreign_reference", "unknown_to_gateway", "paid_elsewhere"])
async def test_charge_success_for_a_reference_we_never_issued_is_ignored(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]], case: str
) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin)
    entries_before = await journal_entries(app)
    data: dict[str, Any] = {
        "id": 4_999_999_999,
        "status": "success",
        "reference": {"foreign_reference": "not-ours-123", "unknown_to_gateway": "pay-0-0000000000000000"}.get(
            case, "pay-paid-elsewhere-0001"
        ),
        "amount": 500000,
        "currency": "NGN",
        "paid_at": "2025-01-01T00:00:00.000Z",
        "channel": "card",
        "metadata": "",
    }
    if case == "paid_elsewhere":
        # a real, successful charge on the same Paystack account, just not one this service started
        initialized = await client.post(
            "/sandbox/paystack/transaction/initialize",
            json={"email": "someone@example.com", "amount": 500000, "reference": data["reference"]},
            headers={"Authorization": f"Bearer {secret(app)}"},
        )
        assert initialized.status_code == 200, initialized.text
        app.state.sandbox.settle_charge(data["reference"], "success", send_webhook=False)
        data = app.state.sandbox.transactions[data["reference"]].verify_data()

    response = await post_signed(client, app, encode({"event": "charge.success", "data": data}))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    await app.state.worker.drain()

    [row] = await webhook_rows(app)
    assert (row.event, row.status) == ("charge.success", "ignored")
    assert await deposits(client, admin) == []
    assert await journal_entries(app) == entries_before
    listed = (await client.get("/v1/payments", headers=admin)).json()["items"]
    assert listed == []


def _nested(levels: int) -> bytes:
    return encode({"event": "charge.success", "data": {"reference": "pay-x", "log": 0}}).replace(
        b'"log":0', b'"log":' + b"[" * levels + b"]" * levels)


UNREADABLE_BODIES = {
    "form": b"event=charge.success&reference=x",
    "not_utf8": b"\xff\xfe not utf-8",
    "utf16": json.dumps({"event": "charge.success", "data": {"id": 1, "reference": "pay-x"}}).encode("utf-16"),
    "deeply_nested": b"[" * 100_000 + b"]" * 100_000,
    "nested_too_deep_in_data": _nested(40),
    "nul_byte": b'{"event":"charge.success","data":{}}\x00',
    "array": b'["charge.success"]',
    "string": b'"charge.success"',
    "number": b"12",
    "no_data": b'{"event":"charge.success"}',
    "data_not_object": b'{"event":"charge.success","data":[{"reference":"pay-x"}]}',
    "data_null": b'{"event":"charge.success","data":null}',
    "event_not_string": b'{"event":7,"data":{}}',
    "event_with_control_characters": b'{"event":"charge.success\\u0000","data":{"reference":"pay-x"}}',
    "event_name_too_long": encode({"event": "charge." + "x" * 100, "data": {}}),
}


@pytest.mark.parametrize("case", list(UNREADABLE_BODIES))
async def test_signed_body_that_is_not_an_event_is_acknowledged_and_kept_as_ignored(
    client: httpx.AsyncClient, app: FastAPI, case: str
) -> None:
    """Its signature holds, so Paystack sent it: refusing it would only have it sent again for days."""
    body = UNREADABLE_BODIES[case]
    entries_before = await journal_entries(app)

    for _ in range(2):  # a redelivery is a duplicate of the first
        response = await post_signed(client, app, body)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}
    await app.state.worker.drain()

    [row] = await webhook_rows(app)
    assert (row.status, row.attempts) == ("ignored", 0)
    assert row.last_error and row.dedup_key.startswith("unreadable:")
    assert row.processed_at is not None
    assert await journal_entries(app) == entries_before


async def test_a_body_nested_within_the_limit_is_processed(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await post_signed(client, app, _nested(20))
    assert response.status_code == 200, response.text
    await app.state.worker.drain()
    [row] = await webhook_rows(app)
    assert (row.event, row.status, row.attempts) == ("charge.success", "ignored", 1)
    assert row.last_error is None  # not ours (the gateway has no such charge), but read and handled


MALFORMED_REFERENCES: dict[str, Any] = {
    "100k_characters": "pay-" + "a" * 100_000,
    "object": {"reference": "pay-x"},
    "list": ["pay-x"],
    "control_characters": "pay-\u0000x",
    "boolean": True,
}


@pytest.mark.parametrize("case", list(MALFORMED_REFERENCES))
async def test_charge_success_with_a_malformed_reference_is_ignored_after_one_attempt(
    client: httpx.AsyncClient, app: FastAPI, case: str
) -> None:
    data = {"id": 4_000_000_777, "status": "success", "reference": MALFORMED_REFERENCES[case], "amount": 500000,
            "currency": "NGN"}
    response = await post_signed(client, app, encode({"event": "charge.success", "data": data}))
    assert response.status_code == 200, response.text

    for _ in range(3):
        await app.state.worker.drain()

    [row] = await webhook_rows(app)
    assert (row.event, row.status, row.attempts) == ("charge.success", "ignored", 1)
    assert row.last_error and row.last_error.startswith("malformed: reference")


@pytest.mark.parametrize(
    ("failure", "status", "attempts"),
    [
        (RetryLater("the charge is not known yet"), "pending", 1),
        (GatewayUnavailable("Paystack answered HTTP 503", status_code=503), "pending", 1),
        (GatewayTimeout("no answer"), "pending", 1),
        (OperationalError("UPDATE", {}, Exception("database is locked")), "pending", 1),
        (ValueError("invalid literal for int()"), "failed", 1),
        (GatewayRejected("Invalid key", status_code=401), "failed", 1),
        (DataError("INSERT", {}, Exception("value too long")), "failed", 1),
        (MalformedEvent("id is not a string"), "ignored", 1),
    ],
    ids=["retry_later", "gateway_unavailable", "gateway_timeout", "database_locked", "value_error",
         "gateway_rejected", "data_error", "malformed"],
)
async def test_only_transient_failures_are_retried(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch, failure: Exception, status: str,
    attempts: int,
) -> None:
    """The inbox decides in one place: another attempt only for what another attempt can get past."""

    async def failing(rt: Runtime, data: dict[str, Any]) -> str:
        raise failure

    # `attempts` then shows what the inbox decided, not how long the drains took.
    charge_success_handled_by(app.state.runtime, monkeypatch, failing)
    response = await post_signed(client, app, encode({"event": "charge.success", "data": {"id": 1}}))
    assert response.status_code == 200, response.text

    for _ in range(3):
        await app.state.worker.drain()

    [row] = await webhook_rows(app)
    assert (row.status, row.attempts) == (status, attempts)
    assert row.last_error
    if status == "pending":
        assert row.available_at > row.received_at  # backed off, tried again later
    else:
        assert row.processed_at is not None


async def test_a_pass_handles_many_events_at_once_and_never_more_than_the_inbox_allows(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claimed events' gateway calls overlap, so the charges they verify share crediting commits: a pass
    handles `inbox.CONCURRENCY` of them at once, never more. A pass claims more than that (past
    `WORKER_BATCH_SIZE` if need be)."""
    rt = app.state.runtime
    at_once = inbox.CONCURRENCY
    in_flight, most = 0, 0
    all_started = asyncio.Event()

    async def slow(rt: Runtime, data: dict[str, Any]) -> str:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == at_once:
            all_started.set()
        try:  # the first `at_once` wait for one another: fewer at once would never get past here
            await asyncio.wait_for(all_started.wait(), timeout=5)
        finally:
            in_flight -= 1
        return "processed"

    # Should the wait run out, an event retried at once would keep the pass going; the hour's backoff ends it.
    charge_success_handled_by(rt, monkeypatch, slow)
    events = at_once + 10
    async with rt.db.unit_of_work() as session:
        await store_events(session, [Arrival("charge.success", {"id": i, "reference": f"r{i}"})
                                     for i in range(events)])

    assert await webhook_tasks.process_inbox(rt) == events
    assert most == at_once
    assert {row.status for row in await webhook_rows(app)} == {"processed"}


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings, loopback=True)
    async with (
        LifespanManager(application, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url=BASE_URL) as http,
    ):
        yield application, http


def _unknown_reference_event() -> bytes:
    return encode({"event": "charge.success", "data": {"id": 4_000_123_456, "reference": "ref-from-paystack"}})


async def test_ip_allowlist_refuses_other_sources(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(webhook_ip_allowlist=PAYSTACK_IP)) as (application, http):
        # the test client's peer is 127.0.0.1; a valid signature does not help
        response = await post_signed(http, application, _unknown_reference_event())
        assert_error(response, 403, "UNAUTHORIZED")
        # and X-Forwarded-For from a peer that is not a trusted proxy is not believed
        spoofed = await post_signed(
            http, application, _unknown_reference_event(), headers={"x-forwarded-for": PAYSTACK_IP}
        )
        assert_error(spoofed, 403, "UNAUTHORIZED")
        assert await webhook_rows(application) == []


async def test_ip_allowlist_behind_a_trusted_proxy(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(webhook_ip_allowlist=PAYSTACK_IP, trusted_proxies="127.0.0.1")
    async with running(settings) as (application, http):
        response = await post_signed(
            http, application, _unknown_reference_event(), headers={"x-forwarded-for": PAYSTACK_IP}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}
        assert len(await webhook_rows(application)) == 1

        other = await post_signed(
            http,
            application,
            encode({"event": "charge.success", "data": {"id": 1}}),
            headers={"x-forwarded-for": "203.0.113.9"},
        )
        assert_error(other, 403, "UNAUTHORIZED")
        # still checked: an allowed address with a bad signature
        unsigned = await http.post(
            WEBHOOK,
            content=_unknown_reference_event(),
            headers={"x-forwarded-for": PAYSTACK_IP, "x-paystack-signature": "0" * 128},
        )
        assert_error(unsigned, 400, "INVALID_SIGNATURE")
        assert len(await webhook_rows(application)) == 1


async def test_an_oversized_webhook_is_refused_and_not_stored(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = b'{"event":"charge.success","data":{"reference":"' + b"x" * 1_100_000 + b'"}}'
    response = await post_signed(client, app, body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert await webhook_rows(app) == []


async def test_storing_events_reports_which_are_new(app: FastAPI) -> None:
    first, second = (Arrival("charge.success", {"id": i, "reference": f"r{i}"}) for i in (1, 2))
    async with app.state.runtime.db.unit_of_work() as session:
        assert await store_events(session, [first]) == [True]
    async with app.state.runtime.db.unit_of_work() as session:
        assert await store_events(session, [first, second]) == [False, True]
    assert [row.dedup_key for row in await webhook_rows(app)] == ["charge.success:1", "charge.success:2"]
