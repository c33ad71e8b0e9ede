"""The application: `create_app()` wires settings, database, gateway, sandbox, worker and routers.

`uvicorn app.main:app` runs it; `python -m app serve` also upgrades the schema first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, FastAPI
from slowapi.errors import RateLimitExceeded
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

# Payment types and webhook event handlers register themselves on import.
import app.distributions.revenue
import app.escrow.disputes
import app.payments.investment
import app.payouts.service
import app.shares.transfers
from app.apps.router import router as apps_router
from app.core.config import Settings, get_settings
from app.core.crypto import FieldCipher
from app.core.db import Database
from app.core.errors import install_error_handlers
from app.core.guards import RequestGuardMiddleware
from app.core.logging import RequestIdMiddleware, configure_logging
from app.core.ratelimit import close_storage, limiter, rate_limit_exceeded, storage_for, use_settings
from app.distributions.router import router as distributions_router
from app.escrow.disputes_router import router as disputes_router
from app.escrow.router import router as escrow_router
from app.gateway.client import PaystackClient
from app.ledger.router import router as ledger_router
from app.ops import router as ops_router
from app.payments.router import router as payments_router
from app.payouts.router import router as payouts_router
from app.runtime import Runtime
from app.shares.router import router as shares_router
from app.worker import Worker

log = logging.getLogger(__name__)

# The service's API, in the order its routes are matched.
ROUTERS: tuple[APIRouter, ...] = (
    ops_router, apps_router, payments_router, escrow_router, disputes_router, payouts_router, shares_router,
    ledger_router, distributions_router,
)


def build_runtime(settings: Settings, gateway_transport: httpx.AsyncBaseTransport | None = None) -> Runtime:
    return Runtime(
        settings=settings,
        db=Database(settings),
        gateway=PaystackClient(
            base_url=settings.gateway_base_url,
            secret_key=settings.paystack_secret_key.get_secret_value(),
            timeout=settings.gateway_timeout_seconds,
            max_retries=settings.gateway_max_retries,
            max_connections=settings.gateway_connections,
            transport=gateway_transport,
        ),
        cipher=FieldCipher.from_settings(settings),
    )


@functools.cache  # once per process: tests build many apps in one
def freeze_long_lived_objects() -> None:
    """What exists once the process has started (modules, routes, mappers, settings) lives as long as
    the process: `gc.freeze` keeps the collector from walking it on every full collection, which
    paused requests for tens of milliseconds (accept p99 in bench/webhooks.py: 101-151 ms before,
    28-49 ms after). Remembered, not asked of `gc.get_freeze_count()`, which walks every frozen
    object (about 25 ms each app start)."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, loopback: bool = False) -> FastAPI:
    """`loopback=True` (tests) sends the gateway client and the sandbox's webhooks through the
    app itself in-process, instead of over a socket to PUBLIC_BASE_URL."""
    settings = settings or get_settings()
    sandbox = None
    rate_limit_storage = storage_for(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        transport = httpx.ASGITransport(app) if loopback else None
        rt = build_runtime(settings, transport)
        app.state.runtime = rt
        app.state.worker = Worker(rt)
        stop = asyncio.Event()
        worker_task = (
            asyncio.create_task(app.state.worker.run_forever(stop), name="worker")
            if settings.worker_in_process else None
        )
        freeze_long_lived_objects()
        try:
            yield
        finally:
            stop.set()
            if worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            if sandbox is not None:
                await sandbox.aclose()
            await rt.gateway.aclose()
            await rt.db.dispose()
            close_storage(rate_limit_storage)

    app = FastAPI(
        title="Payment service",
        version="1.0.0",
        description="Collects investments through Paystack, holds them in escrow on a double-entry ledger, "
        "keeps the cap table and shares revenue out to shareholders.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    use_settings(settings, rate_limit_storage)
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded)
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    if settings.trusted_proxy_ips:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_ips)
    install_error_handlers(app)

    # The routes themselves, not `include_router`: FastAPI keeps an included router nested and builds every
    # route of it again for each app, on the first request that walks it (tens of milliseconds per app,
    # and the tests build one app per test). These routers are included without a prefix, tags, dependencies
    # or responses of the app's own, so the routes they built once at import are already the app's routes.
    # One difference: `app.dependency_overrides` does not reach them; nothing here overrides a dependency.
    for router in ROUTERS:
        app.router.routes.extend(router.routes)

    if settings.is_sandbox:
        from app.gateway.sandbox import Sandbox

        sandbox = Sandbox(
            secret_key=settings.paystack_secret_key.get_secret_value(),
            public_base_url=settings.public_base_url,
            webhook_url=f"{settings.public_base_url}/v1/webhooks/paystack",
            settle_delay=settings.sandbox_settle_delay_seconds,
            webhook_retry_delays=settings.sandbox_webhook_retry_schedule,
            webhook_transport=httpx.ASGITransport(app) if loopback else None,
        )
        sandbox.serve_from(app)
    return app


app = create_app()
