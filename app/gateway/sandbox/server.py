"""The sandbox as a process of its own (`python -m app sandbox`): Paystack for services that run in
`test` mode with PAYSTACK_BASE_URL pointing here.

Its records live in this process's memory, so it outlives the services it serves: they can be
killed and restarted and still find the charges they made. It sends its webhooks to one URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app.core.asgi import WITHOUT_OPENTELEMETRY
from app.core.config import Settings
from app.gateway.sandbox.emulator import Sandbox


def create_sandbox_app(settings: Settings, *, public_base_url: str, webhook_url: str) -> FastAPI:
    """The sandbox's routes under MOUNT_PREFIX, with checkout links under `public_base_url` (where this
    process is reached) and webhooks signed with PAYSTACK_SECRET_KEY sent to `webhook_url`.

    Refuses a live key, as sandbox mode does: a service holding one must never be pointed at a
    gateway whose checkout lets anyone settle their own charge."""
    secret_key = settings.paystack_secret_key.get_secret_value()
    if secret_key.startswith("sk_live_"):
        raise ValueError("the sandbox refuses an sk_live_ PAYSTACK_SECRET_KEY")
    sandbox = Sandbox(
        secret_key=secret_key,
        public_base_url=public_base_url,
        webhook_url=webhook_url,
        settle_delay=settings.sandbox_settle_delay_seconds,
        webhook_retry_delays=settings.sandbox_webhook_retry_schedule,
        transfer_otp=settings.sandbox_transfer_otp,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sandbox.aclose()

    app = FastAPI(title="Paystack sandbox", lifespan=lifespan, openapi_url=None, telemetry=WITHOUT_OPENTELEMETRY)
    sandbox.serve_from(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
