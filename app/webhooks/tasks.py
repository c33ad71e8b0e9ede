"""The worker's inbox job: due events claimed (SKIP LOCKED, leased), each applied by its handler from the
wiring's `EventHandlers`, and the outcomes recorded in one transaction; only transient failures are tried
again, after a backoff."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Update, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.core import metrics, outbox
from app.core.db import is_retryable
from app.core.logging import redact
from app.gateway.errors import GatewayError, GatewayRejected
from app.models import WebhookEvent
from app.models.base import utcnow
from app.runtime import Runtime
from app.webhooks.inbox import (
    CONCURRENCY,
    MAX_ATTEMPTS,
    EventHandlers,
    InboxHealth,
    MalformedEvent,
    RetryLater,
    backlog,
    inbox_health,
)

log = logging.getLogger(__name__)


def _is_transient(error: Exception) -> bool:
    """Failures another attempt can get past: the event is not applicable yet, or the gateway or the
    database is unavailable or in conflict. Anything else (a value no column holds, a gateway refusal,
    a request that cannot be built) fails the same way every time."""
    if isinstance(error, RetryLater | OSError | PoolTimeout):  # OSError: refused, reset, timed out
        return True
    if isinstance(error, GatewayError):
        return not isinstance(error, GatewayRejected)
    return isinstance(error, DBAPIError) and (
        error.connection_invalidated
        or is_retryable(error)
        or isinstance(error, OperationalError | IntegrityError | InterfaceError)
    )


@dataclass(frozen=True, slots=True)
class _Claimed:
    """An inbox event this worker holds for the lease."""

    id: int
    event: str
    payload: str
    attempts: int  # this attempt included


async def _claim(rt: Runtime, limit: int) -> list[_Claimed]:
    """Take up to `limit` due events, oldest first; SKIP LOCKED lets several workers share the inbox.

    Locked by one statement, then updated by id: as one `UPDATE ... WHERE id IN (locking subquery)`, a plan
    PostgreSQL had kept from polls of an empty inbox ran the subquery again for every row of a full one and
    claimed every due event, whatever `limit` said (docs/performance.md)."""
    async with rt.db.unit_of_work() as session:
        now = utcnow()
        waiting = select(WebhookEvent.id).where(WebhookEvent.status.in_(("pending", "processing")))
        due = outbox.due(waiting.order_by(WebhookEvent.id), WebhookEvent.available_at, now, limit=limit)
        ids = (await session.scalars(due)).all()
        if not ids:
            return []
        claimed = await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(ids))
            .values(status="processing", attempts=WebhookEvent.attempts + 1,
                    available_at=now + outbox.lease(rt.settings.worker_lease_seconds))
            .returning(WebhookEvent.id, WebhookEvent.event, WebhookEvent.payload, WebhookEvent.attempts)
            .execution_options(synchronize_session=False)
        )
        return sorted((_Claimed(*row) for row in claimed), key=lambda event: event.id)


async def _process(rt: Runtime, event: _Claimed) -> tuple[str, str | None]:
    """Run the event's handler; returns the inbox status it ends in and the error, if any."""
    started = time.perf_counter()
    label = metrics.event_label(event.event)
    handler = rt.extension(EventHandlers).by_event.get(event.event)
    outcome: tuple[str, str | None]
    try:
        data = json.loads(event.payload).get("data")
        if handler is None or not isinstance(data, dict):
            outcome, result = ("ignored", None), "ignored"
        else:
            result = await handler(rt, data)
            outcome = ("ignored" if result == "ignored" else "processed", None)
    except MalformedEvent as error:
        log.warning("webhook event %s ignored: %s", event.id, error)
        outcome, result = ("ignored", redact(f"malformed: {error}")), "malformed"
    except Exception as error:  # only a transient failure is worth another attempt
        if not _is_transient(error):
            log.exception("webhook event %s failed; another attempt would fail the same way", event.id)
            outcome, result = ("failed", redact(repr(error))), "failed"
        elif event.attempts >= MAX_ATTEMPTS:
            log.error("webhook event %s gave up after %s attempts: %s", event.id, event.attempts, error)
            outcome, result = ("failed", redact(repr(error))), "failed"
        else:
            if not isinstance(error, RetryLater):
                log.warning("webhook event %s failed; will retry", event.id, exc_info=error)
            outcome, result = ("pending", redact(repr(error))), "retry"
    metrics.WEBHOOK_EVENTS.labels(event=label, result=result).inc()
    metrics.WEBHOOK_PROCESSING.observe(time.perf_counter() - started)
    return outcome


async def _finish(rt: Runtime, events: list[_Claimed], outcomes: list[tuple[str, str | None]]) -> None:
    """Record a batch's outcomes in one transaction. A worker that dies before this leaves the
    events to be taken again after their lease: handlers apply each fact once, so that is safe.
    Each row is written only while this claim still holds it (status `processing`, the claim's attempt
    number): an event whose lease ran out and another worker took keeps that worker's outcome."""
    now = utcnow()
    done: dict[tuple[str, int], list[int]] = {}
    recorded = 0
    async with rt.db.unit_of_work() as session:
        for event, (status, error) in zip(events, outcomes, strict=True):
            if status == "pending":
                recorded += (await session.execute(_still_held(WebhookEvent.id == event.id, event.attempts).values(
                    status="pending", last_error=(error or "")[:1000],
                    available_at=now + outbox.backoff(event.attempts + 1, first=1, most=3600)))).rowcount
            elif error is not None:
                recorded += (await session.execute(_still_held(WebhookEvent.id == event.id, event.attempts).values(
                    status=status, last_error=error[:1000], processed_at=now))).rowcount
            else:
                done.setdefault((status, event.attempts), []).append(event.id)
        for (status, attempts), ids in done.items():
            recorded += (await session.execute(_still_held(WebhookEvent.id.in_(ids), attempts).values(
                status=status, processed_at=now, last_error=None))).rowcount
    if recorded < len(events):
        log.warning("%s of %s webhook events were taken by another worker after their lease (WORKER_LEASE_SECONDS) "
                    "ran out; their outcome here is not recorded", len(events) - recorded, len(events))


def _still_held(events: ColumnElement[bool], attempts: int) -> Update:
    """An update of `events` that leaves out any no longer held by the claim of attempt `attempts`."""
    return update(WebhookEvent).where(events, WebhookEvent.status == "processing", WebhookEvent.attempts == attempts)


async def process_inbox(rt: Runtime) -> int:
    """Process every due event; returns how many were handled."""
    handled = 0
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def run(event: _Claimed) -> tuple[str, str | None]:
        async with semaphore:
            return await _process(rt, event)

    # More claimed than handled at once, so that the last few of a claim, finishing alone, are a small part of it.
    while events := await _claim(rt, max(rt.settings.worker_batch_size, 2 * CONCURRENCY)):
        outcomes = await asyncio.gather(*(run(event) for event in events))
        await _finish(rt, events, list(outcomes))
        handled += len(events)
    return handled


async def inbox_backlog(rt: Runtime) -> int:
    """How many events wait to be processed (readiness shows it)."""
    async with rt.db.unit_of_work() as session:
        return await backlog(session)


async def inbox_state(rt: Runtime) -> InboxHealth:
    """The inbox as readiness judges it (`inbox_health`)."""
    async with rt.db.unit_of_work() as session:
        return await inbox_health(session, utcnow())
