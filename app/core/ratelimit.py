"""Rate limits (slowapi): per user when authenticated, per client IP otherwise.

Every router carries `RATE_LIMITED` (the default limit, checked once routing has
found the endpoint); money-moving POSTs and the webhook carry their own limit
through `limiter.limit(...)` instead. The limits
come from settings at request time, so one module-level limiter serves any app.
Storage is Redis when `REDIS_URL` is set; if Redis goes away the limiter falls
back to memory instead of failing requests.
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import _should_exempt

from app.core.config import Settings, get_settings
from app.core.errors import RateLimited, render
from app.core.net import client_ip
from app.core.security import principal_from_request

log = logging.getLogger(__name__)

_active: dict[str, Settings] = {}


def use_settings(settings: Settings) -> None:
    """Called by create_app: the limits of the app being served."""
    _active["settings"] = settings
    limiter.enabled = settings.rate_limit_enabled


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


def build_limiter(storage_uri: str | None) -> Limiter:
    return Limiter(
        key_func=rate_limit_key,
        default_limits=[default_limit],
        storage_uri=storage_uri or "memory://",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,
        key_prefix="payments-svc",
    )


limiter = build_limiter(get_settings().redis_url)


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
