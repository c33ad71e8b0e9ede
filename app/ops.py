"""Operations: liveness, readiness, metrics.

`/healthz` and `/metrics` are not rate limited: they never wait on the limiter's storage
(Redis), so a hung Redis cannot make the process look dead.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from app.core import metrics
from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.events.delivery import outbound_backlog
from app.ledger.flows import failing_cheap_checks, ledger_sum
from app.models.base import utcnow
from app.web.deps import RuntimeDep
from app.webhooks.tasks import inbox_backlog, inbox_state

router = APIRouter(route_class=ExactJSONRoute, tags=["operations"])
REDIS_READINESS_TIMEOUT_SECONDS = 1.0


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok`: the process answers.")


class Check(BaseModel):
    name: str = Field(description="What was checked: `database`, `database_transaction_integrity`, "
                      "`business_integrity`, `redis` (when configured), `gateway`.")
    ok: bool = Field(description="Whether it passed.")
    details: dict[str, Any] = Field(description="What it found, and `ms`, how long it took.")


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"] = Field(description="`ok` when every check passed.")
    failing: list[str] = Field(description="The names of the checks that failed.")
    checks: list[Check] = Field(description="Every check, in the order run.")


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(name: str, checks: list[dict[str, Any]], probe: Any) -> None:
    started = time.perf_counter()
    try:
        ok, details = await probe()
    except Exception as error:  # a probe that breaks is a failing check, never a 500
        ok, details = False, {"error": type(error).__name__}
    details["ms"] = round((time.perf_counter() - started) * 1000, 1)
    checks.append({"name": name, "ok": ok, "details": details})


@router.get("/readyz", dependencies=[RATE_LIMITED], response_model=Readiness, responses={
    503: {"model": Readiness, "description": "A check failed: `failing` names it (not the error envelope)."}
})
async def readyz(request: Request, rt: RuntimeDep) -> JSONResponse:
    checks: list[dict[str, Any]] = []

    async def database() -> tuple[bool, dict[str, Any]]:
        waiting = await inbox_backlog(rt)  # a query: it answers only if the database does
        metrics.WEBHOOK_BACKLOG.set(waiting)
        return True, {"webhook_backlog": waiting}

    async def webhook_backlog() -> tuple[bool, dict[str, Any]]:
        """Fails when a due webhook event has waited longer than WEBHOOK_BACKLOG_MAX_AGE_SECONDS: no worker
        is taking them (stopped, or far behind). Recovers by itself once the inbox drains."""
        state = await inbox_state(rt)
        now = utcnow()
        oldest = None if state.oldest_due_at is None else (now - state.oldest_due_at).total_seconds()
        last = None if state.last_received_at is None else (now - state.last_received_at).total_seconds()
        limit = rt.settings.webhook_backlog_max_age_seconds
        # Reported, not judged: a receiver that is down holds deliveries back without the service being unready.
        events_waiting, deliveries_pending = await outbound_backlog(rt)
        return oldest is None or oldest <= limit, {
            "waiting": state.waiting,
            "oldest_due_age_seconds": None if oldest is None else round(oldest, 1),
            "last_received_age_seconds": None if last is None else round(last, 1),
            "max_age_seconds": limit,
            "outbound_events_waiting": events_waiting,
            "outbound_deliveries_pending": deliveries_pending,
        }

    async def transaction_integrity() -> tuple[bool, dict[str, Any]]:
        """The cheap form of /v1/admin/integrity: all postings together sum to zero."""
        total = await ledger_sum(rt)
        return total == 0, {"ledger_sum": total}

    async def business_integrity() -> tuple[bool, dict[str, Any]]:
        """The cheap business checks of /v1/admin/integrity: the in-flight accounts hold exactly the
        open payouts and refunds."""
        failing = await failing_cheap_checks(rt)
        return not failing, {"failing": failing}

    async def redis() -> tuple[bool, dict[str, Any]]:
        """Async and bounded as a whole: a hung Redis fails this check within a second, never holds the loop."""
        client = Redis.from_url(
            rt.settings.redis_url or "",
            socket_timeout=REDIS_READINESS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_READINESS_TIMEOUT_SECONDS,
        )
        try:
            async with asyncio.timeout(REDIS_READINESS_TIMEOUT_SECONDS):
                return bool(await client.ping()), {}
        finally:
            await client.aclose()

    async def gateway() -> tuple[bool, dict[str, Any]]:
        return await rt.gateway.reachable(), {"mode": rt.settings.payment_gateway_mode, "url": rt.gateway.base_url}

    await _check("database", checks, database)
    await _check("webhook_backlog", checks, webhook_backlog)
    await _check("database_transaction_integrity", checks, transaction_integrity)
    await _check("business_integrity", checks, business_integrity)
    if rt.settings.redis_url:
        await _check("redis", checks, redis)
    await _check("gateway", checks, gateway)
    failing = [c["name"] for c in checks if not c["ok"]]
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "checks": checks}
    return JSONResponse(body, status_code=200 if not failing else 503)


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus's text exposition format.",
          "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}}},
})
async def prometheus_metrics() -> Response:
    payload, content_type = metrics.render_latest()
    return Response(payload, media_type=content_type)
