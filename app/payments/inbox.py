"""The webhook inbox: events are stored once when they arrive and processed by a worker.

Domains register what to do with an event name; events nobody handles are
stored and marked ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.models import WebhookEvent
from app.models.base import utcnow
from app.runtime import Runtime

log = logging.getLogger(__name__)

EventHandler = Callable[[Runtime, dict[str, Any]], Awaitable[str]]
_HANDLERS: dict[str, EventHandler] = {}
MAX_ATTEMPTS = 12
CONCURRENCY = 16


class RetryLater(Exception):
    """The event cannot be applied yet (e.g. the gateway is down): try again after a backoff."""


def on_event(*names: str) -> Callable[[EventHandler], EventHandler]:
    def register(handler: EventHandler) -> EventHandler:
        for name in names:
            _HANDLERS[name] = handler
        return handler

    return register


def dedup_key(event: str, data: dict[str, Any]) -> str:
    """Paystack sends no event id: the event name plus the data's id (or reference) identifies it."""
    ident = data.get("id")
    if ident is None or ident == "":
        ident = data.get("reference") or data.get("transaction_reference") or ""
    if event.startswith("transfer.") and data.get("reference"):
        # a retried payout keeps its reference: each attempt's transfer and outcome is its own event
        ident = f"{data['reference']}:{data.get('transfer_code') or data.get('id') or ''}:{data.get('status', '')}"
    return f"{event}:{ident}"[:200]


async def store_event(session: AsyncSession, event: str, data: dict[str, Any], raw_body: bytes) -> bool:
    """Insert the event unless it is a duplicate. Returns True if it is new."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stored = await session.scalar(
        insert(WebhookEvent)
        .values(event=event[:64], dedup_key=dedup_key(event, data), payload=raw_body.decode("utf-8"),
                status="pending", attempts=0, available_at=utcnow(), received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(WebhookEvent.id)
    )
    return stored is not None


async def _claim(rt: Runtime, limit: int) -> list[WebhookEvent]:
    """Take up to `limit` due events; SKIP LOCKED lets several workers share the inbox."""
    lease = timedelta(seconds=rt.settings.worker_lease_seconds)
    async with rt.db.unit_of_work() as session:
        now = utcnow()
        events = (
            await session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.status.in_(("pending", "processing")), WebhookEvent.available_at <= now)
                .order_by(WebhookEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for event in events:
            event.status = "processing"
            event.attempts += 1
            event.available_at = now + lease  # if this worker dies, another takes it after the lease
        return list(events)


async def _finish(rt: Runtime, event_id: int, status: str, error: str | None = None, retry_in: float = 0) -> None:
    async with rt.db.unit_of_work() as session:
        event = await session.get(WebhookEvent, event_id, with_for_update=True)
        assert event is not None
        event.status = status
        event.last_error = error[:1000] if error else None
        if status == "pending":
            event.available_at = utcnow() + timedelta(seconds=retry_in)
        else:
            event.processed_at = utcnow()


async def _process(rt: Runtime, event: WebhookEvent) -> None:
    started = time.perf_counter()
    label = metrics.event_label(event.event)
    handler = _HANDLERS.get(event.event)
    try:
        data = json.loads(event.payload).get("data")
        if handler is None or not isinstance(data, dict):
            await _finish(rt, event.id, "ignored")
            result = "ignored"
        else:
            result = await handler(rt, data)
            # a handler that found nothing to act on (e.g. a reference we never issued) says so
            await _finish(rt, event.id, "ignored" if result == "ignored" else "processed")
    except Exception as error:  # any failure: the event stays in the inbox and is retried
        if event.attempts >= MAX_ATTEMPTS:
            log.error("webhook event %s gave up after %s attempts: %s", event.id, event.attempts, error)
            await _finish(rt, event.id, "failed", repr(error))
            result = "failed"
        else:
            if not isinstance(error, RetryLater):
                log.exception("webhook event %s failed; will retry", event.id)
            await _finish(rt, event.id, "pending", repr(error), retry_in=min(2**event.attempts, 3600))
            result = "retry"
    metrics.WEBHOOK_EVENTS.labels(event=label, result=result).inc()
    metrics.WEBHOOK_PROCESSING.observe(time.perf_counter() - started)


async def process_inbox(rt: Runtime) -> int:
    """Process every due event; returns how many were handled."""
    handled = 0
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def run(event: WebhookEvent) -> None:
        async with semaphore:
            await _process(rt, event)

    while events := await _claim(rt, rt.settings.worker_batch_size):
        await asyncio.gather(*(run(event) for event in events))
        handled += len(events)
    return handled


async def backlog(session: AsyncSession) -> int:
    due = or_(WebhookEvent.status == "pending", WebhookEvent.status == "processing")
    return await session.scalar(select(func.count()).select_from(WebhookEvent).where(due)) or 0
