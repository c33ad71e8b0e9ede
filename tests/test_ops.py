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
