"""The application: `create_app()` wires settings, database, gateway, sandbox, worker and routers.

`uvicorn app.main:app` runs it; `python -m app serve` also upgrades the schema first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from slowapi.errors import RateLimitExceeded
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import wiring
from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.guards import RequestGuardMiddleware
from app.core.logging import RequestIdMiddleware, configure_logging
from app.core.ratelimit import close_storage, limiter, rate_limit_exceeded, storage_for, use_settings
from app.gateway.sandbox import Sandbox
from app.openapi import install_openapi
from app.runtime import build_runtime, freeze_long_lived_objects
from app.worker import Worker

log = logging.getLogger(__name__)


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
        rt = build_runtime(settings, wiring.EXTENSIONS, transport)
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
    metrics.instrument_http(app)  # outermost: it times and counts every answer, refusals included
    install_error_handlers(app)
    install_openapi(app)

    # The routes themselves, not `include_router`: FastAPI keeps an included router nested and builds every
    # route of it again for each app, on the first request that walks it (tens of milliseconds per app,
    # and the tests build one app per test). These routers are included without a prefix, tags, dependencies
    # or responses of the app's own, so the routes they built once at import are already the app's routes.
    # One difference: `app.dependency_overrides` does not reach them; nothing here overrides a dependency.
    for router in wiring.ROUTERS:
        app.router.routes.extend(router.routes)

    if settings.is_sandbox:
        sandbox = Sandbox(
            secret_key=settings.paystack_secret_key.get_secret_value(),
            public_base_url=settings.public_base_url,
            webhook_url=f"{settings.public_base_url}/v1/webhooks/paystack",
            settle_delay=settings.sandbox_settle_delay_seconds,
            webhook_retry_delays=settings.sandbox_webhook_retry_schedule,
            transfer_otp=settings.sandbox_transfer_otp,
            webhook_transport=httpx.ASGITransport(app) if loopback else None,
        )
        sandbox.serve_from(app)
    return app


app = create_app()
