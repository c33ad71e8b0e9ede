"""Prometheus metrics. Labels are bounded sets (statuses, event names, codes), never ids."""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from app.core.asgi import HttpMiddleware

PAYMENTS = Counter("payments_total", "Payments reaching a status", ["status"])
REFUNDS = Counter("refunds_total", "Refunds reaching a status", ["status"])
PAYMENT_PROCESSING = Histogram(
    "payment_processing_seconds", "From verified charge to applied fulfilment", buckets=(
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
)
WEBHOOK_EVENTS = Counter("webhook_events_total", "Webhook events by outcome", ["event", "result"])
WEBHOOK_PROCESSING = Histogram("webhook_processing_seconds", "Processing one stored webhook event")
ERRORS = Counter("errors_total", "Error responses by code", ["code"])
PAYOUTS = Counter(
    "payouts_total", "Payouts reaching a conclusive status (reversed_after_paid: sent back after success)", ["status"]
)
PAYOUTS_OPEN = Gauge(
    "payouts_open",
    "Payouts not yet over, by status as the API shows it (awaiting_payout_account: no default account; "
    "awaiting_funds: the gateway's balance; awaiting_otp: an admin's OTP; failed: an admin's retry), as the "
    "worker last counted them",
    ["status"], multiprocess_mode="max",
)
CHECKOUT_TO_PAID = Histogram(
    "payment_checkout_to_paid_seconds", "From a payment's creation (its checkout opened) to its crediting",
    buckets=(5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
# Jobs a group commit carried in one transaction (app.core.batching.MAX_BATCH is 128)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
ESCROW_BATCH_SIZE = Histogram(
    "escrow_batch_size", "Escrow releases and refunds committed together in one transaction",
    buckets=BATCH_SIZE_BUCKETS,
)
WEBHOOK_INTAKE_BATCH_SIZE = Histogram(
    "webhook_intake_batch_size", "Arriving webhooks stored together in one transaction",
    buckets=BATCH_SIZE_BUCKETS,
)
CREDIT_BATCH_SIZE = Histogram(
    "payments_credit_batch_size", "Charges verified with the gateway and applied together in one transaction",
    buckets=BATCH_SIZE_BUCKETS,
)
CHARGEBACKS_FLAGGED = Counter(
    "chargebacks_flagged_total", "Chargebacks whose money stays frozen for an admin, by why", ["reason"]
)
WEBHOOK_BACKLOG = Gauge("webhook_inbox_backlog", "Webhook events waiting to be processed", multiprocess_mode="max")
RATE_LIMIT_IN_MEMORY = Gauge(
    "rate_limit_counting_in_memory",
    "1 while this process counts rate limits in its own memory because Redis did not answer (summed over processes)",
    multiprocess_mode="livesum",
)
RATE_LIMIT_REDIS_TRIPS = Counter(
    "rate_limit_redis_trips_total", "Times the rate limiter stopped using Redis, by the failure that made it stop",
    ["reason"],
)
RECONCILIATION_RUNS = Counter("reconciliation_runs_total", "Periodic reconciliations of the books with the gateway")
RECONCILIATION_DIFFERENCES = Gauge(
    "reconciliation_differences", "Differences the last periodic reconciliation found, by record and kind",
    ["record", "kind"], multiprocess_mode="livemax",
)
OUTBOUND_DELIVERIES = Counter(
    "outbound_deliveries_total", "Attempts to deliver an outbound event to a webhook endpoint, by result", ["result"]
)

GATEWAY_CALL_DURATION = Histogram(
    "gateway_call_duration_seconds",
    "One request to the payment gateway (each retry is one), by method, endpoint template and outcome",
    ["method", "endpoint", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered, by route template, method and status", ["handler", "method",
                                                                                           "status"]
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request, by route template, method and status",
    ["handler", "method", "status"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Path segments of the gateway's API that are words, not values: any other segment is a reference or an id
# and is shown as `{id}`, so the endpoint label stays a bounded set of templates.
GATEWAY_PATH_WORDS = frozenset({
    "transaction", "initialize", "verify", "refund", "transfer", "transferrecipient", "bulk", "bank", "resolve",
    "balance", "finalize_transfer", "resend_otp", "disable_otp", "enable_otp", "charge", "dispute", "settlement",
})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def gateway_endpoint(path: str) -> str:
    """`/transaction/verify/ref_123?x=1` -> `/transaction/verify/{id}`."""
    segments = path.partition("?")[0].strip("/").split("/")
    return "/" + "/".join(s if s in GATEWAY_PATH_WORDS else "{id}" for s in segments if s)


class HttpMetricsMiddleware(HttpMiddleware):
    """Counts and times every HTTP request by route template, method and status. The template is the route
    the router chose (`scope["route"]`, read once the answer is sent; `none` for a path no route serves), so
    ids in paths never become labels. An exception that escapes the app counts as a 500."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            handler = getattr(scope.get("route"), "path", None) or "none"
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            labels = (handler, method, str(status))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_REQUEST_DURATION.labels(*labels).observe(time.perf_counter() - started)


def instrument_http(app: Starlette) -> None:
    """Count and time every HTTP request of `app` (see HttpMetricsMiddleware). Not
    prometheus-fastapi-instrumentator, which this replaced: it matched the path against every route again
    (14-28 us a request here, measured) and built a request, a response and an info object per request."""
    app.add_middleware(HttpMetricsMiddleware)


KNOWN_EVENTS = {
    "charge.success", "transfer.success", "transfer.failed", "transfer.reversed", "refund.pending",
    "refund.processing", "refund.processed", "refund.failed", "refund.needs-attention", "charge.dispute.create",
    "charge.dispute.remind", "charge.dispute.resolve",
}


def event_label(event: str) -> str:
    """Unknown event names collapse to one label so a sender cannot grow the series."""
    return event if event in KNOWN_EVENTS else "other"


# What /metrics answers with (the schema declares it).
CONTENT_TYPE = CONTENT_TYPE_LATEST


def render_latest() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(), CONTENT_TYPE
