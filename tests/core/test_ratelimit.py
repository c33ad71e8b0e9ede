"""Rate limits: per user on money POSTs and other routes, per IP on the webhook, and no 500s when Redis is down.

Counters may live in Redis (TEST_REDIS_URL) and outlive a run, so every test uses fresh user ids and client IPs.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware

from app.core import ratelimit
from app.core.config import Settings
from app.core.errors import install_error_handlers
from app.core.ratelimit import build_limiter, rate_limit_exceeded
from app.main import create_app
from tests.conftest import BASE_URL, unique
from tests.helpers import put_app

Auth = Callable[..., dict[str, str]]
MakeSettings = Callable[..., Settings]


def random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@contextlib.asynccontextmanager
async def serve(settings: Settings, client_ip: str | None = None) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings, loopback=True)
    transport = httpx.ASGITransport(application, client=(client_ip or random_ip(), 40000))
    async with (
        LifespanManager(application, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http,
    ):
        yield application, http


def assert_rate_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "RATE_LIMITED"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 60
    assert error["details"]["retry_after"] == int(retry_after)
    return int(retry_after)


def investment(app_id: str, shares: int = 1) -> dict[str, Any]:
    return {"payment_type": "investment", "app_id": app_id, "email": "investor@example.com",
            "currency": "NGN", "shares": shares}


async def test_payments_are_limited_per_user(make_settings: MakeSettings, auth: Auth) -> None:
    settings = make_settings(rate_limit_enabled=True, rate_limit_payments="2/minute",
                             rate_limit_default="10000/minute")
    app_id = unique("app")
    alice, bob = auth(unique("alice")), auth(unique("bob"))
    async with serve(settings) as (_, http):
        await put_app(http, auth(unique("admin"), admin=True), app_id)
        for _ in range(2):
            response = await http.post("/v1/payments", json=investment(app_id), headers=alice)
            assert response.status_code == 201, response.text
        limited = await http.post("/v1/payments", json=investment(app_id), headers=alice)
        assert_rate_limited(limited)
        # the limit covers the money POSTs' shared bucket, not just one body
        assert_rate_limited(await http.post("/v1/payments", json=investment(app_id, 2), headers=alice))

        # someone else is not affected
        response = await http.post("/v1/payments", json=investment(app_id), headers=bob)
        assert response.status_code == 201, response.text
        # reading is another limit: alice can still see her two payments
        listed = await http.get("/v1/payments", headers=alice)
        assert listed.status_code == 200
        assert len(listed.json()["items"]) == 2


async def test_default_limit_applies_to_reads_per_user(make_settings: MakeSettings, auth: Auth) -> None:
    settings = make_settings(rate_limit_enabled=True, rate_limit_default="3/minute")
    alice, bob = auth(unique("alice")), auth(unique("bob"))
    async with serve(settings) as (_, http):
        for _ in range(3):
            assert (await http.get("/v1/payments", headers=alice)).status_code == 200
        assert_rate_limited(await http.get("/v1/payments", headers=alice))
        assert (await http.get("/v1/payments", headers=bob)).status_code == 200


async def test_anonymous_callers_are_limited_per_ip(make_settings: MakeSettings) -> None:
    settings = make_settings(rate_limit_enabled=True, rate_limit_default="2/minute")
    async with serve(settings, client_ip=random_ip()) as (_, http):
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        assert_rate_limited(await http.get("/healthz"))
    async with serve(settings, client_ip=random_ip()) as (_, other):
        assert (await other.get("/healthz")).status_code == 200


async def test_webhook_has_its_own_limit(make_settings: MakeSettings) -> None:
    # the default would allow one request; the webhook's own limit allows three
    settings = make_settings(rate_limit_enabled=True, rate_limit_default="1/minute", rate_limit_webhooks="3/minute")
    headers = {"x-paystack-signature": "0" * 128, "Content-Type": "application/json"}
    async with serve(settings, client_ip=random_ip()) as (_, http):
        for _ in range(3):
            response = await http.post("/v1/webhooks/paystack", content=b'{"event":"x","data":{}}', headers=headers)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "INVALID_SIGNATURE"
        assert_rate_limited(
            await http.post("/v1/webhooks/paystack", content=b'{"event":"x","data":{}}', headers=headers)
        )
    async with serve(settings, client_ip=random_ip()) as (_, other):
        response = await other.post("/v1/webhooks/paystack", content=b"{}", headers=headers)
        assert response.status_code == 400


async def test_disabled_rate_limits_never_answer_429(make_settings: MakeSettings, auth: Auth) -> None:
    settings = make_settings(rate_limit_enabled=False, rate_limit_default="1/minute",
                             rate_limit_payments="1/minute", rate_limit_webhooks="1/minute")
    app_id = unique("app")
    investor = auth(unique("investor"))
    async with serve(settings) as (_, http):
        await put_app(http, auth(unique("admin"), admin=True), app_id)
        for _ in range(3):
            assert (await http.get("/v1/payments", headers=investor)).status_code == 200
            assert (await http.post("/v1/payments", json=investment(app_id), headers=investor)).status_code == 201
            assert (await http.post("/v1/webhooks/paystack", content=b"{}")).status_code == 400


# Redis down


@pytest.fixture
def limits_of(monkeypatch: pytest.MonkeyPatch, make_settings: MakeSettings) -> Callable[..., Settings]:
    """Point the limiter's limit callables at these settings for the test (create_app normally does it)."""

    def use(**overrides: Any) -> Settings:
        settings = make_settings(**overrides)
        monkeypatch.setitem(ratelimit._active, "settings", settings)
        return settings

    return use


def tiny_app(storage_uri: str, settings: Settings) -> FastAPI:
    application = FastAPI()
    application.state.settings = settings
    application.state.limiter = build_limiter(storage_uri)
    application.add_exception_handler(RateLimitExceeded, rate_limit_exceeded)
    application.add_middleware(SlowAPIASGIMiddleware)
    install_error_handlers(application)

    @application.get("/ping")
    async def ping(request: Request) -> dict[str, str]:
        return {"pong": "yes"}

    return application


async def test_redis_down_falls_back_to_memory(limits_of: Callable[..., Settings]) -> None:
    settings = limits_of(rate_limit_enabled=True, rate_limit_default="3/minute")
    application = tiny_app("redis://127.0.0.1:1", settings)  # nothing listens on port 1
    transport = httpx.ASGITransport(application, client=(random_ip(), 40000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        for _ in range(3):
            response = await http.get("/ping")
            assert response.status_code == 200, response.text
            assert response.json() == {"pong": "yes"}
        assert_rate_limited(await http.get("/ping"))  # counted in memory instead
    assert application.state.limiter._storage_dead


async def test_redis_down_with_a_token_still_answers(limits_of: Callable[..., Settings], auth: Auth) -> None:
    settings = limits_of(rate_limit_enabled=True, rate_limit_default="2/minute")
    application = tiny_app("redis://127.0.0.1:1", settings)
    transport = httpx.ASGITransport(application, client=(random_ip(), 40000), raise_app_exceptions=False)
    alice, bob = auth(unique("alice")), auth(unique("bob"))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        assert [(await http.get("/ping", headers=alice)).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(await http.get("/ping", headers=alice))
        assert (await http.get("/ping", headers=bob)).status_code == 200  # still per user
