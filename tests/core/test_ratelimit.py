"""Rate limits: per user on money POSTs and other routes, per IP on the webhook, no 500s when Redis is down,
and a hung Redis (SIGSTOP) never freezes the API.

Counters may live in Redis (TEST_REDIS_URL) and outlive a run, so every test uses fresh user ids and client IPs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware

from app.core import ratelimit
from app.core.config import Settings
from app.core.errors import install_error_handlers
from app.core.ratelimit import (
    MemoryCounters,
    RedisBreakerStorage,
    build_limiter,
    close_storage,
    rate_limit_exceeded,
    storage_for,
)
from app.main import create_app
from tests.conftest import BASE_URL, unique
from tests.helpers import checkout, get_payment, invest, put_app

Auth = Callable[..., dict[str, str]]
MakeSettings = Callable[..., Settings]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # A busy test machine can hold Redis up for tens of milliseconds; falling back to memory in the middle of a
    # test would restart the counts it checks.
    return {"rate_limit_redis_timeout_seconds": 0.25}


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
        # callers without a token are counted by IP (on /v1/ they are refused 401 before any work)
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        assert_rate_limited(await http.get("/readyz"))
    async with serve(settings, client_ip=random_ip()) as (_, other):
        assert (await other.get("/readyz")).status_code == 200


async def test_liveness_and_metrics_are_never_limited(make_settings: MakeSettings) -> None:
    settings = make_settings(rate_limit_enabled=True, rate_limit_default="1/minute")
    async with serve(settings, client_ip=random_ip()) as (_, http):
        for _ in range(5):
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200  # readiness does work: it keeps the default limit
        assert_rate_limited(await http.get("/readyz"))


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


def test_memory_counters_count_per_window_and_forget_ended_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    counters = MemoryCounters()
    assert [counters.incr("minute", 60) for _ in range(3)] == [1, 2, 3]
    assert counters.incr("ten-seconds", 10, amount=2) == 2
    assert (counters.get("minute"), counters.get_expiry("minute")) == (3, 1060.0)

    clock[0] = 1010.0  # the ten-second window has ended, the minute has not
    assert counters.get("ten-seconds") == 0
    assert counters.get("minute") == 3
    assert counters.incr("ten-seconds", 10) == 1  # a new window
    assert counters.get_expiry("ten-seconds") == 1020.0

    clock[0] = 1060.0 + MemoryCounters.SWEEP_SECONDS
    assert counters.incr("another", 60) == 1  # the sweep drops both ended windows
    assert counters.reset() == 1


# Redis down


@pytest.fixture
def limits_of(monkeypatch: pytest.MonkeyPatch, make_settings: MakeSettings) -> Callable[..., Settings]:
    """Point the limiter's limit callables at these settings for the test (create_app normally does it)."""

    def use(**overrides: Any) -> Settings:
        settings = make_settings(**overrides)
        monkeypatch.setitem(ratelimit._active, "settings", settings)
        return settings

    return use


@contextlib.contextmanager
def tiny_app(settings: Settings) -> Iterator[FastAPI]:
    """An app with slowapi's own middleware, counting in `storage_for(settings)`."""
    storage = storage_for(settings)
    application = FastAPI()
    application.state.settings = settings
    application.state.limiter = build_limiter(storage)
    application.state.storage = storage
    application.add_exception_handler(RateLimitExceeded, rate_limit_exceeded)
    application.add_middleware(SlowAPIASGIMiddleware)
    install_error_handlers(application)

    @application.get("/ping")
    async def ping(request: Request) -> dict[str, str]:
        return {"pong": "yes"}

    try:
        yield application
    finally:
        close_storage(storage)


NOTHING_LISTENS = "redis://127.0.0.1:1"  # nothing listens on port 1


async def test_redis_down_falls_back_to_memory(limits_of: Callable[..., Settings]) -> None:
    settings = limits_of(rate_limit_enabled=True, rate_limit_default="3/minute", redis_url=NOTHING_LISTENS)
    with tiny_app(settings) as application:
        transport = httpx.ASGITransport(application, client=(random_ip(), 40000), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            for _ in range(3):
                response = await http.get("/ping")
                assert response.status_code == 200, response.text
                assert response.json() == {"pong": "yes"}
            assert_rate_limited(await http.get("/ping"))  # counted in memory instead
        assert isinstance(application.state.storage, RedisBreakerStorage)
        assert application.state.storage.counting_in_memory


async def test_redis_down_with_a_token_still_answers(limits_of: Callable[..., Settings], auth: Auth) -> None:
    settings = limits_of(rate_limit_enabled=True, rate_limit_default="2/minute", redis_url=NOTHING_LISTENS)
    alice, bob = auth(unique("alice")), auth(unique("bob"))
    with tiny_app(settings) as application:
        transport = httpx.ASGITransport(application, client=(random_ip(), 40000), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            assert [(await http.get("/ping", headers=alice)).status_code for _ in range(2)] == [200, 200]
            assert_rate_limited(await http.get("/ping", headers=alice))
            assert (await http.get("/ping", headers=bob)).status_code == 200  # still per user


# Redis hung (SIGSTOP): a redis-server of the test's own, never the shared one


@dataclasses.dataclass
class OwnRedis:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def counted(self, user_id: str) -> int:
        """What the limiter counted in this Redis for `user_id`, over all its limits."""
        client = redis.Redis.from_url(self.url)
        try:
            return sum(int(client.get(key) or 0) for key in client.keys(f"*/user:{user_id}/*"))
        finally:
            client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed: the hung-Redis test runs one of its own to SIGSTOP")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    own = OwnRedis(process, f"redis://127.0.0.1:{port}/0")
    try:
        client = redis.Redis.from_url(own.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield own
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait(timeout=10)


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def breaker_log() -> Iterator[list[str]]:
    collected = Collected()
    logger = logging.getLogger(ratelimit.__name__)
    logger.addHandler(collected)
    try:
        yield collected.messages
    finally:
        logger.removeHandler(collected)


def trips() -> float:
    return sum(REGISTRY.get_sample_value("rate_limit_redis_trips_total", {"reason": reason}) or 0.0
               for reason in ("timeout", "connection", "error"))


def counting_in_memory() -> float | None:
    return REGISTRY.get_sample_value("rate_limit_counting_in_memory")


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Wait for something that happens in the background, with a deadline against hangs."""
    async with asyncio.timeout(seconds):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.02)


HANG_GUARD_SECONDS = 3  # generous: the requests below take a fraction of a second; a blocked loop took 5 s each


async def test_a_hung_redis_never_freezes_the_api(own_redis: OwnRedis, make_settings: MakeSettings,
                                                  auth: Auth) -> None:
    settings = make_settings(
        redis_url=own_redis.url, rate_limit_enabled=True, rate_limit_default="1000/minute",
        rate_limit_payments="3/minute", rate_limit_redis_probe_seconds=0.05,
        worker_in_process=True, worker_poll_interval_seconds=0.05,
    )
    app_id = unique("app")
    alice_id, bob_id, carol_id = unique("alice"), unique("bob"), unique("carol")
    alice, bob, carol = auth(alice_id), auth(bob_id), auth(carol_id)
    with breaker_log() as log_lines:
        async with serve(settings) as (_, http):
            await put_app(http, auth(unique("admin"), admin=True), app_id)
            payment = await invest(http, alice, app_id, shares=1)
            assert own_redis.counted(alice_id) == 1  # counted in Redis while it answers

            own_redis.stop()
            trips_before = trips()
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                responses = await asyncio.gather(
                    *(http.get("/healthz") for _ in range(20)),
                    *(http.get("/metrics") for _ in range(5)),
                    *(http.post("/v1/payments", json=investment(app_id), headers=bob) for _ in range(5)),
                    checkout(http, payment, "success"),
                )
            assert [r.status_code for r in responses[:20]] == [200] * 20
            assert [r.status_code for r in responses[20:25]] == [200] * 5
            posts = responses[25:30]
            assert sorted(r.status_code for r in posts) == [201, 201, 201, 429, 429]  # the limit, from memory
            assert_rate_limited(next(r for r in posts if r.status_code == 429))
            assert responses[30].status_code in (200, 303), responses[30].text
            assert trips() - trips_before == 1  # one call paid the timeout; later ones never touched Redis
            assert counting_in_memory() == 1
            assert "rate_limit_counting_in_memory 1.0" in (await http.get("/metrics")).text

            # readiness still names Redis, and its own probe is bounded
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["failing"] == ["redis"]

            # the in-process worker keeps going: the charge's webhook is processed and the payment credited
            async def credited() -> bool:
                return (await get_payment(http, alice, payment["reference"]))["status"] == "success"

            await until(credited)

            own_redis.resume()
            async def back_on_redis() -> bool:
                return counting_in_memory() == 0

            await until(back_on_redis)
            assert (await http.post("/v1/payments", json=investment(app_id), headers=carol)).status_code == 201
            assert own_redis.counted(carol_id) == 1  # counting in Redis again
            assert (await http.get("/readyz")).status_code == 200
    assert [line for line in log_lines if "rate limits:" in line] == [
        "rate limits: Redis failed (timeout, TimeoutError); counting in this process's memory until it answers again",
        "rate limits: Redis answers again; counting there",
    ]
