"""Health, readiness, metrics and request ids, as an operator sees them."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import httpx
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from app.openapi import install_openapi
from app.runtime import freeze_long_lived_objects
from app.wiring import ROUTERS
from tests.conftest import BASE_URL
from tests.helpers import invest, pay, put_app

ROOT = Path(__file__).resolve().parent.parent


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_readyz_reports_each_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    names = {check["name"] for check in response.json()["checks"]}
    assert {"database", "gateway"} <= names
    database = next(c for c in response.json()["checks"] if c["name"] == "database")
    assert database["details"]["webhook_backlog"] == 0


async def test_readyz_names_the_failing_check(client: httpx.AsyncClient, app: FastAPI) -> None:
    async def unreachable() -> bool:
        return False

    app.state.runtime.gateway.reachable = unreachable
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["gateway"]


async def test_metrics_count_payments_webhooks_and_errors(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    await pay(client, app, await invest(client, investor))
    await client.get("/v1/payments/nope", headers=investor)
    text = (await client.get("/metrics")).text
    assert 'payments_total{status="success"}' in text
    assert 'webhook_events_total{event="charge.success",result="processed"}' in text
    assert "payment_processing_seconds_count" in text
    assert "webhook_processing_seconds_count" in text
    assert 'errors_total{code="NOT_FOUND"}' in text
    checkout_to_paid = [line for line in text.splitlines() if line.startswith("payment_checkout_to_paid_seconds_count")]
    assert checkout_to_paid and float(checkout_to_paid[0].split()[-1]) >= 1


async def test_metrics_show_open_payouts_by_status(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    from app.ledger import accounts
    from app.ledger.service import move, post
    from app.payouts.service import queue_payout

    async with app.state.runtime.db.unit_of_work() as session:  # money owed to someone with no payout account
        await post(session, kind="test_owed", legs=move(accounts.gateway("NGN"), accounts.payable("u-9", "NGN"), 500),
                   idempotency_key="test:owed")
        await queue_payout(session, user_id="u-9", amount=500, currency="NGN", reason="release", source_id="test")
    await app.state.worker.drain()
    lines = {line.split()[0]: float(line.split()[-1]) for line in (await client.get("/metrics")).text.splitlines()
             if line.startswith("payouts_open{")}
    assert lines['payouts_open{status="awaiting_payout_account"}'] == 1
    assert lines['payouts_open{status="pending"}'] == 0


async def test_openapi_documents_the_contract(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/v1/payments" in schema["paths"]
    assert "/v1/webhooks/paystack" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200


def test_the_apps_routes_are_those_its_routers_serve_when_included(settings: Settings) -> None:
    """create_app adds the routers' routes to the app instead of including the routers (see there): the
    documented API must be what including them gives (the schema completed the same way)."""
    included = FastAPI()
    for router in ROUTERS:
        included.include_router(router)
    install_openapi(included)
    served = create_app(settings).openapi()
    expected = included.openapi()
    assert list(served["paths"]) == list(expected["paths"])
    assert served["paths"] == expected["paths"]
    assert served["components"] == expected["components"]


async def test_worker_process_starts_and_stops_cleanly(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "WORKER_POLL_INTERVAL_SECONDS": "0.1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.worker", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    assert b"worker started" in line
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0


async def _served_and_shut_down(settings: Settings, auth: Callable[..., dict[str, str]]) -> weakref.ref[FastAPI]:
    """An app that paid an investment through its sandbox and shut down; only a weak reference to it is left."""
    application = create_app(settings, loopback=True)
    async with LifespanManager(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(application), base_url=BASE_URL
    ) as http:
        await put_app(http, auth("admin-1", admin=True))
        await pay(http, application, await invest(http, auth("investor-1")))
    return weakref.ref(application)


async def test_an_app_that_has_shut_down_is_not_kept_alive(
    app: FastAPI, settings: Settings, auth: Callable[..., dict[str, str]]
) -> None:
    """The suite builds an app per test: one kept alive after its test (FastAPI caches each endpoint it serves,
    and endpoints made per sandbox held the sandbox and so its app) made every full garbage collection walk
    hundreds of them. `app` has started first: the first app of a process is frozen with the startup objects."""
    shut_down = await _served_and_shut_down(settings, auth)
    gc.collect()
    assert shut_down() is None


async def test_startup_objects_are_frozen_once_per_process(app: FastAPI) -> None:
    frozen = gc.get_freeze_count()
    assert frozen > 0  # the app's startup froze what lives as long as the process
    freeze_long_lived_objects()
    assert gc.get_freeze_count() == frozen


async def _store_webhook(app: FastAPI, age_seconds: float, event: str = "charge.dispute.remind") -> None:
    """An event accepted `age_seconds` ago and still waiting (no worker has run since)."""
    from datetime import timedelta

    from app.models import WebhookEvent
    from app.models.base import utcnow

    at = utcnow() - timedelta(seconds=age_seconds)
    async with app.state.runtime.db.unit_of_work() as session:
        session.add(WebhookEvent(event=event, dedup_key=f"{event}:{age_seconds}", payload='{"data": {}}',
                                 status="pending", attempts=0, available_at=at, received_at=at))


def _check(body: dict, name: str) -> dict:
    return next(c for c in body["checks"] if c["name"] == name)


async def test_readyz_fails_on_a_stalled_webhook_inbox_and_recovers_when_it_drains(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert _check(ready.json(), "webhook_backlog")["details"]["oldest_due_age_seconds"] is None

    await _store_webhook(app, 30)  # waiting, but younger than WEBHOOK_BACKLOG_MAX_AGE_SECONDS (300)
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    details = _check(ready.json(), "webhook_backlog")["details"]
    assert details["waiting"] == 1 and 30 <= details["oldest_due_age_seconds"] < 300
    assert 30 <= details["last_received_age_seconds"] < 300

    await _store_webhook(app, 600)  # the worker is stopped: nothing takes it
    stalled = await client.get("/readyz")
    assert stalled.status_code == 503, stalled.text
    assert stalled.json()["failing"] == ["webhook_backlog"]
    details = _check(stalled.json(), "webhook_backlog")["details"]
    assert (details["waiting"], details["max_age_seconds"]) == (2, 300)
    assert details["oldest_due_age_seconds"] >= 600

    await app.state.worker.drain()  # the worker is back
    drained = await client.get("/readyz")
    assert drained.status_code == 200, drained.text
    assert _check(drained.json(), "webhook_backlog")["details"]["waiting"] == 0


async def test_readyz_reports_the_outbound_event_backlog(client: httpx.AsyncClient, app: FastAPI) -> None:
    from app.events.record import emit

    async with app.state.runtime.db.unit_of_work() as session:
        emit(session, "payment.failed", {"reference": "pay-1"})
    details = _check((await client.get("/readyz")).json(), "webhook_backlog")["details"]
    assert (details["outbound_events_waiting"], details["outbound_deliveries_pending"]) == (1, 0)
    await app.state.worker.drain()  # no endpoint subscribes: dispatched to nobody
    details = _check((await client.get("/readyz")).json(), "webhook_backlog")["details"]
    assert details["outbound_events_waiting"] == 0


async def test_an_event_waiting_out_its_retry_backoff_does_not_fail_readiness(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.models import WebhookEvent
    from app.models.base import utcnow

    await _store_webhook(app, 600)
    async with app.state.runtime.db.unit_of_work() as session:  # tried, failed for now, due again later
        await session.execute(update(WebhookEvent).values(attempts=3, available_at=utcnow() + timedelta(hours=1)))
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert _check(ready.json(), "webhook_backlog")["details"]["waiting"] == 1


def _samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


async def test_metrics_count_and_time_requests_by_route_template(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]
) -> None:
    from prometheus_client import REGISTRY

    def reads() -> float:  # the process's counters are shared by the tests it runs: compare before and after
        return REGISTRY.get_sample_value(
            "http_requests_total", {"handler": "/v1/apps/{app_id}", "method": "GET", "status": "200"}) or 0.0

    admin = auth("admin-1", admin=True)
    await put_app(client, admin, "app-metrics-7")
    before = reads()
    for _ in range(2):
        assert (await client.get("/v1/apps/app-metrics-7", headers=admin)).status_code == 200
    assert reads() == before + 2
    assert (await client.get("/v1/apps/no-such-app-9", headers=admin)).status_code == 404
    await client.get("/no/route/here/42")
    text = (await client.get("/metrics")).text

    counts = _samples(text, "http_requests_total")
    assert any('handler="/v1/apps/{app_id}",method="GET",status="404"' in line for line in counts), counts
    assert any('handler="/v1/apps/{app_id}",method="PUT",status="200"' in line for line in counts), counts
    assert any('handler="none"' in line for line in counts), counts  # a path no route serves
    durations = _samples(text, "http_request_duration_seconds_count")
    assert any('handler="/v1/apps/{app_id}",method="GET",status="200"' in line for line in durations), durations
    every_label = "\n".join(line for line in text.splitlines() if line.startswith("http_"))
    assert "app-metrics-7" not in every_label and "no-such-app-9" not in every_label and "/42" not in every_label


async def test_metrics_time_gateway_calls_by_endpoint_template_and_outcome(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor)
    await pay(client, app, payment)
    text = (await client.get("/metrics")).text
    calls = _samples(text, "gateway_call_duration_seconds_count")
    assert any('endpoint="/transaction/initialize",method="POST",outcome="success"' in line for line in calls), calls
    assert any('endpoint="/transaction/verify/{id}",method="GET",outcome="success"' in line for line in calls), calls
    assert payment["reference"] not in "\n".join(line for line in text.splitlines() if line.startswith("gateway_"))


async def test_a_failed_gateway_call_is_timed_with_its_outcome() -> None:
    from prometheus_client import REGISTRY

    from app.gateway.client import PaystackClient
    from app.gateway.errors import GatewayUnavailable

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value(
            "gateway_call_duration_seconds_count",
            {"method": "GET", "endpoint": "/transfer/verify/{id}", "outcome": outcome}) or 0.0

    before = count("unavailable")
    async with PaystackClient(secret_key="sk_test_x", base_url="https://paystack.test", max_retries=0) as gateway:
        with respx.mock(using="httpx", base_url="https://paystack.test") as mock:
            mock.get("/transfer/verify/po-ref-1").respond(503, json={"status": False, "message": "down"})
            try:
                await gateway.verify_transfer("po-ref-1")
            except GatewayUnavailable:
                pass
            else:
                raise AssertionError("a 503 is a failure")
    assert count("unavailable") == before + 1


def test_gateway_endpoint_templates_keep_words_and_hide_values() -> None:
    from app.core.metrics import gateway_endpoint

    assert gateway_endpoint("/transaction/verify/ref_abc-123") == "/transaction/verify/{id}"
    assert gateway_endpoint("/refund/98765") == "/refund/{id}"
    assert gateway_endpoint("/transfer/bulk") == "/transfer/bulk"
    assert gateway_endpoint("/bank/resolve?account_number=0123456789") == "/bank/resolve"
