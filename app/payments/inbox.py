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
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
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
# Events of a claimed batch handled at once: their gateway calls overlap and their charges share commits.
CONCURRENCY = 48


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
    if event.startswith("refund."):
        # Refund bodies name the charge, not the refund (most carry no id): two refunds of one charge
        # differ by their refund reference (or id), amount or status.
        parts = ("transaction_reference", "refund_reference", "id", "amount", "status")
        ident = ":".join(str(data.get(part) or "") for part in parts)
    return f"{event}:{ident}"[:200]


@dataclass(frozen=True)
class Arrival:
    """A webhook as it arrived: what the inbox stores."""

    event: str
    data: dict[str, Any]
    raw_body: bytes

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.event, self.data)


async def store_events(session: AsyncSession, arrivals: list[Arrival]) -> list[bool]:
    """Insert the events that are not duplicates, in one round trip; True for each one that is new.
    Arrivals with the same dedup key must not share a call (the group commit's key sees to it)."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    # One statement compiled once for any number of rows: SQLAlchemy batches the parameter sets
    # into multi-row INSERTs itself ("insertmanyvalues"), RETURNING included.
    stored = set(await session.scalars(
        insert(WebhookEvent).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(WebhookEvent.dedup_key),
        [{"event": a.event[:64], "dedup_key": a.dedup_key, "payload": a.raw_body.decode("utf-8"),
          "status": "pending", "attempts": 0, "available_at": now, "received_at": now} for a in arrivals],
    ))
    return [a.dedup_key in stored for a in arrivals]


async def store_event(rt: Runtime, arrival: Arrival) -> bool:
    """Store one arriving event, sharing the transaction with those arriving at the same time.
    Returns True if it is new."""
    commits = rt.group_commit("webhook inbox", store_events)
    return bool(await commits.submit(arrival, key=arrival.dedup_key))


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


async def _process(rt: Runtime, event: WebhookEvent) -> tuple[str, str | None]:
    """Run the event's handler; returns the inbox status it ends in and the error, if any."""
    started = time.perf_counter()
    label = metrics.event_label(event.event)
    handler = _HANDLERS.get(event.event)
    outcome: tuple[str, str | None]
    try:
        data = json.loads(event.payload).get("data")
        if handler is None or not isinstance(data, dict):
            outcome, result = ("ignored", None), "ignored"
        else:
            result = await handler(rt, data)
            outcome = ("ignored" if result == "ignored" else "processed", None)
    except Exception as error:  # any failure: the event stays in the inbox and is retried
        if event.attempts >= MAX_ATTEMPTS:
            log.error("webhook event %s gave up after %s attempts: %s", event.id, event.attempts, error)
            outcome, result = ("failed", repr(error)), "failed"
        else:
            if not isinstance(error, RetryLater):
                log.exception("webhook event %s failed; will retry", event.id)
            outcome, result = ("pending", repr(error)), "retry"
    metrics.WEBHOOK_EVENTS.labels(event=label, result=result).inc()
    metrics.WEBHOOK_PROCESSING.observe(time.perf_counter() - started)
    return outcome


async def _finish(rt: Runtime, events: list[WebhookEvent], outcomes: list[tuple[str, str | None]]) -> None:
    """Record a batch's outcomes in one transaction. A worker that dies before this leaves the
    events to be taken again after their lease: handlers apply each fact once, so that is safe."""
    now = utcnow()
    done: dict[str, list[int]] = {}
    async with rt.db.unit_of_work() as session:
        for event, (status, error) in zip(events, outcomes, strict=True):
            if status == "pending":
                await session.execute(
                    update(WebhookEvent).where(WebhookEvent.id == event.id).values(
                        status="pending", last_error=(error or "")[:1000],
                        available_at=now + timedelta(seconds=min(2**event.attempts, 3600)))
                )
            elif error is not None:
                await session.execute(
                    update(WebhookEvent).where(WebhookEvent.id == event.id).values(
                        status=status, last_error=error[:1000], processed_at=now)
                )
            else:
                done.setdefault(status, []).append(event.id)
        for status, ids in done.items():
            await session.execute(
                update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(status=status, processed_at=now,
                                                                             last_error=None)
            )


async def process_inbox(rt: Runtime) -> int:
    """Process every due event; returns how many were handled."""
    handled = 0
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def run(event: WebhookEvent) -> tuple[str, str | None]:
        async with semaphore:
            return await _process(rt, event)

    while events := await _claim(rt, rt.settings.worker_batch_size):
        outcomes = await asyncio.gather(*(run(event) for event in events))
        await _finish(rt, events, list(outcomes))
        handled += len(events)
    return handled


async def backlog(session: AsyncSession) -> int:
    due = or_(WebhookEvent.status == "pending", WebhookEvent.status == "processing")
    return await session.scalar(select(func.count()).select_from(WebhookEvent).where(due)) or 0
