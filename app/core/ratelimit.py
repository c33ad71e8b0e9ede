"""Rate limits (slowapi): per user when authenticated, per client IP otherwise.

Every router carries `RATE_LIMITED` (the default limit, checked once routing has
found the endpoint); money-moving POSTs and the webhook carry their own limit
through `limiter.limit(...)` instead. `/healthz` and `/metrics` carry no limit, so
they never wait on the limiter's storage. The limits come from settings at request
time, so one module-level limiter serves any app; `create_app` hands it the app's
settings and the storage of its counters (`storage_for`).

Counters live in Redis when `REDIS_URL` is set, behind a circuit breaker
(`RedisBreakerStorage`): slowapi and `limits` call Redis synchronously, on the
event loop, so a slow or hung Redis may cost one short timeout, never a frozen
process.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from limits.storage import RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import _should_exempt

from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.errors import RateLimited, render
from app.core.net import client_ip
from app.core.security import principal_from_request

log = logging.getLogger(__name__)

T = TypeVar("T")

_active: dict[str, Settings] = {}


def use_settings(settings: Settings, storage: Storage) -> None:
    """Called by create_app: the limits of the app being served, and where its counters live."""
    _active["settings"] = settings
    limiter.enabled = settings.rate_limit_enabled
    use_storage(limiter, storage)


def _settings() -> Settings:
    return _active.get("settings") or get_settings()


def default_limit() -> str:
    return _settings().rate_limit_default


def payments_limit() -> str:
    return _settings().rate_limit_payments


def webhooks_limit() -> str:
    return _settings().rate_limit_webhooks


def rate_limit_key(request: Request) -> str:
    try:
        principal = principal_from_request(request)
    except Exception:  # a bad token is the route's business; here it is just anonymous
        principal = None
    if principal is not None:
        return f"user:{principal.user_id}"
    return f"ip:{client_ip(request) or 'unknown'}"


# slowapi asks `inspect.signature` about the key function and the limit providers on every request (10-13 µs
# each, about 5% of a webhook's CPU in the API); a signature stored on the function is returned as it is.
for _asked in (rate_limit_key, default_limit, payments_limit, webhooks_limit):
    _asked.__signature__ = inspect.signature(_asked)  # type: ignore[attr-defined]


class MemoryCounters(Storage):
    """Fixed-window counters in this process's memory.

    `limits`' MemoryStorage starts a timer thread on nearly every hit to expire its keys, and
    starting a thread waits for the OS to schedule it: milliseconds of a stalled event loop
    on a busy machine. Here expired windows are dropped as counting goes, in one pass over
    the keys at most every `SWEEP_SECONDS`.
    """

    SWEEP_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._windows: dict[str, tuple[int, float]] = {}  # key: (count, the window's end in time.time())
        self._lock = threading.Lock()
        self._next_sweep = time.time() + self.SWEEP_SECONDS

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._windows = {k: window for k, window in self._windows.items() if window[1] > now}
                self._next_sweep = now + self.SWEEP_SECONDS
            count, ends = self._windows.get(key, (0, now))
            if ends <= now:
                count, ends = 0, now + expiry
            self._windows[key] = (count + amount, ends)
            return count + amount

    def get(self, key: str) -> int:
        count, ends = self._windows.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        _, ends = self._windows.get(key, (0, now))
        return max(ends, now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            cleared = len(self._windows)
            self._windows = {}
        return cleared


class RedisBreakerStorage(Storage):
    """Counters in Redis while it answers within `timeout`; in this process's memory while it does not.

    Every call blocks the event loop, so each Redis call is bounded by a connect/read timeout
    of `timeout` and never retried. The first failure or timeout opens the breaker: the call
    is counted in memory instead, later calls count in memory without touching Redis, and a
    thread (off the event loop) pings Redis every `probe_interval` until it answers, which
    closes the breaker. Memory counters are per process and start empty: while Redis is away
    N processes allow up to N times a limit, and a caller's count restarts when counting
    moves to memory and back.
    """

    def __init__(self, redis_url: str, *, timeout: float, probe_interval: float) -> None:
        super().__init__()
        self.redis = RedisStorage(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self.memory = MemoryCounters()
        self.probe_interval = probe_interval
        self._state = threading.Lock()
        self._open = False
        self._closed = threading.Event()

    @property
    def base_exceptions(self) -> type[Exception]:
        return RedisError

    @property
    def counting_in_memory(self) -> bool:
        return self._open

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._call(lambda storage: storage.incr(key, expiry, amount))

    def get(self, key: str) -> int:
        return self._call(lambda storage: storage.get(key))

    def get_expiry(self, key: str) -> float:
        return self._call(lambda storage: storage.get_expiry(key))

    def clear(self, key: str) -> None:
        self._call(lambda storage: storage.clear(key))

    def check(self) -> bool:
        """Always able to count (in memory if need be); whether Redis answers is the probe's business."""
        return True

    def reset(self) -> int | None:
        self.memory.reset()
        return self._call(lambda storage: storage.reset())

    def close(self) -> None:
        """At the app's shutdown: stops the probe and drops the Redis connections."""
        self._closed.set()
        self.redis.get_connection().close()

    def _call(self, operation: Callable[[Storage], T]) -> T:
        if not self._open:
            try:
                return operation(self.redis)
            except RedisError as error:
                self._trip(error)
        return operation(self.memory)

    def _trip(self, error: RedisError) -> None:
        with self._state:
            if self._open:
                return
            self._open = True
        reason = (
            "timeout" if isinstance(error, RedisTimeoutError)
            else "connection" if isinstance(error, RedisConnectionError)
            else "error"
        )
        metrics.RATE_LIMIT_REDIS_TRIPS.labels(reason=reason).inc()
        metrics.RATE_LIMIT_IN_MEMORY.set(1)
        log.warning("rate limits: Redis failed (%s, %s); counting in this process's memory until it answers again",
                    reason, type(error).__name__)
        threading.Thread(target=self._probe_until_redis_answers, name="rate-limit-redis-probe", daemon=True).start()

    def _probe_until_redis_answers(self) -> None:
        while not self._closed.wait(self.probe_interval):
            if self.redis.check():
                with self._state:
                    self._open = False
                metrics.RATE_LIMIT_IN_MEMORY.set(0)
                log.warning("rate limits: Redis answers again; counting there")
                return


def storage_for(settings: Settings) -> Storage:
    """Where an app's counters live: Redis behind the breaker when REDIS_URL is set, else this process's memory."""
    if not settings.redis_url:
        return MemoryCounters()
    return RedisBreakerStorage(
        settings.redis_url,
        timeout=settings.rate_limit_redis_timeout_seconds,
        probe_interval=settings.rate_limit_redis_probe_seconds,
    )


def close_storage(storage: Storage) -> None:
    """At the app's shutdown: no probe thread or Redis connection outlives the app."""
    if isinstance(storage, RedisBreakerStorage):
        storage.close()


def use_storage(active: Limiter, storage: Storage) -> None:
    """slowapi only builds a storage from a URI: hand it ours through the two attributes it counts with."""
    active._storage = storage
    active._limiter = FixedWindowRateLimiter(storage)


def build_limiter(storage: Storage) -> Limiter:
    """Storage failures never fail a request: the breaker counts in memory instead, and anything
    else the storage raises is logged and let through (`swallow_errors`)."""
    built = Limiter(
        key_func=rate_limit_key,
        default_limits=[default_limit],
        strategy="fixed-window",
        storage_uri="memory://",
        swallow_errors=True,
        headers_enabled=False,
        key_prefix="payments-svc",
    )
    use_storage(built, storage)
    return built


limiter = build_limiter(MemoryCounters())


def _retry_after(request: Request, exc: RateLimitExceeded) -> int:
    window = getattr(request.state, "view_rate_limit", None)
    active: Limiter = getattr(request.app.state, "limiter", limiter)
    if window is not None:
        try:
            reset_at, _ = active.limiter.get_window_stats(window[0], *window[1])
            return max(1, math.ceil(reset_at - time.time()))
        except Exception:  # storage trouble: fall back to the window length
            log.debug("could not read the rate-limit window", exc_info=True)
    return max(1, int(exc.limit.limit.get_expiry()))


async def rate_limit_exceeded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimitExceeded)
    retry_after = _retry_after(request, exc)
    limited = RateLimited(limit=str(exc.limit.limit), retry_after=retry_after)
    return render(limited, headers={"Retry-After": str(retry_after)})


async def check_default_limit(request: Request) -> None:
    """The default limit for a routed request.

    slowapi's middleware looks the endpoint up in `app.routes`, which cannot see
    into routers FastAPI now keeps nested, so every route would pass unlimited.
    Here routing has already happened and the endpoint is in the scope; routes
    with their own `limiter.limit(...)` are left to it, as the middleware would.
    """
    active: Limiter = request.app.state.limiter
    endpoint = request.scope.get("endpoint")
    if not active.enabled or endpoint is None or _should_exempt(active, endpoint):
        return
    if f"{endpoint.__module__}.{endpoint.__name__}" in active._dynamic_route_limits:
        return  # a route with its own limit from settings (payments, webhooks)
    active._check_request_limit(request, endpoint, True)


RATE_LIMITED = Depends(check_default_limit)
