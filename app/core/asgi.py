"""The shape of the service's pure ASGI middlewares (no request body is buffered), and what every FastAPI app
of the service is built with."""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp, Receive, Scope, Send

# FastAPI's own OpenTelemetry hooks, off in the API and the sandbox alike: the service exports Prometheus metrics
# and logs, not OpenTelemetry, and with them on FastAPI asks OpenTelemetry for its providers on every request
# (about 14 us, measured).
WITHOUT_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class HttpMiddleware:
    """Acts on HTTP requests only (`handle`); lifespan and other scopes pass straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
