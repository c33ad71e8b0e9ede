"""The application: `create_app()` wires settings, database, gateway, sandbox, worker and routers.

`uvicorn app.main:app` runs it; `python -m app serve` also upgrades the schema first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from slowapi.errors import RateLimitExceeded
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import wiring
from app.core import metrics
from app.core.asgi import WITHOUT_OPENTELEMETRY
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

# Swagger UI (/docs) and ReDoc (/redoc) load their scripts and styles from the copies the fastapi-offline package
# ships, served here: the pages work without internet access (FastAPI's own load them from a CDN).
DOCS_ASSETS_PATH = "/docs-assets"
DOCS_ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
SWAGGER_UI_PARAMETERS = {
    "persistAuthorization": True,  # a token given to Authorize survives a reload of the page
    "validatorUrl": None,  # no call to the online validator
}


async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        swagger_js_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS_PATH}/favicon.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )


async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{DOCS_ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )


# Built once, like the domain routers (see create_app): no route holds an app of its own.
docs_router = APIRouter()
docs_router.add_api_route("/docs", swagger_ui, include_in_schema=False)
docs_router.add_api_route("/docs/oauth2-redirect", swagger_ui_oauth2_redirect, include_in_schema=False)
docs_router.add_api_route("/redoc", redoc, include_in_schema=False)
docs_router.mount(DOCS_ASSETS_PATH, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")


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
        docs_url=None,  # served from packaged assets: docs_router
        redoc_url=None,
        telemetry=WITHOUT_OPENTELEMETRY,
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
    for router in (*wiring.ROUTERS, docs_router):
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
