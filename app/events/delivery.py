"""The worker's delivery of outbound events to webhook endpoints.

Two steps each pass. The fan-out turns committed events into one delivery per subscribed, enabled endpoint
(events claimed with SKIP LOCKED, so each becomes its deliveries once however many workers run). Then each
endpoint with due deliveries is leased to one worker (its lane) and served by a task of its own, which starts
its deliveries in event order with at most `WEBHOOK_DELIVERY_WINDOW` in flight at once (one kept-alive
connection each), so a slow or dead receiver holds up neither the other endpoints nor the worker's other
jobs, and a receiver's round trips overlap instead of adding up. A 2xx within the timeout is delivered;
anything else is retried with exponential backoff and jitter until `WEBHOOK_DELIVERY_MAX_AGE_SECONDS`, then
failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from sqlalchemy import exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics, outbox
from app.core.config import Settings
from app.events import signing, urls
from app.events.catalogue import ALL
from app.events.service import delivery_backlog
from app.models.base import new_ids, utcnow
from app.models.events import OutboundEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.runtime import Runtime

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 10.0
LONGEST_WAIT_SECONDS = 6 * 3600.0
JITTER = 0.2  # each wait is drawn within 20% of its nominal value, so receivers that failed together spread out
LANE_BATCH = 100  # deliveries an endpoint's lane reads at once
RECORD_EVERY_SECONDS = 5.0  # outcomes are recorded at least this often, well within a lane's lease
ERROR_LENGTH = 500
ANSWER_BYTES_READ = 64 * 1024  # of a receiver's answer, read so that its connection can be kept alive


def next_wait(attempts: int, draw: Callable[[], float] = random.random) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 10 s doubling up to 6 h, with jitter."""
    nominal = outbox.backoff(attempts, first=FIRST_RETRY_SECONDS, most=LONGEST_WAIT_SECONDS).total_seconds()
    return timedelta(seconds=nominal * (1 - JITTER + 2 * JITTER * draw()))


def subscribed(filters: list[str], event_type: str) -> bool:
    return ALL in filters or event_type in filters


# ---- fan-out ------------------------------------------------------------------------------------------------


async def fan_out(rt: Runtime) -> int:
    """Turn committed events into deliveries, oldest first; returns how many events it took."""
    taken = 0
    limit = rt.settings.worker_batch_size
    while True:
        async with rt.db.unit_of_work() as session:
            events = (await session.execute(
                outbox.due(select(OutboundEvent.id, OutboundEvent.type).where(OutboundEvent.dispatched.is_(False))
                           .order_by(OutboundEvent.id), OutboundEvent.created_at, utcnow(), limit=limit)
            )).all()
            if not events:
                return taken
            endpoints = (await session.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.events).where(WebhookEndpoint.disabled.is_(False))
            )).all()
            pairs = [(endpoint_id, event_id, event_type) for event_id, event_type in events
                     for endpoint_id, filters in endpoints if subscribed(filters, event_type)]
            now = utcnow()
            give_up_at = now + timedelta(seconds=rt.settings.webhook_delivery_max_age_seconds)
            if pairs:  # one multi-row INSERT, not a unit of work's objects (each event of a burst passes here)
                await session.execute(insert(WebhookDelivery), [
                    {"id": delivery_id, "endpoint_id": endpoint_id, "event_id": event_id, "event_type": event_type,
                     "status": "pending", "attempts": 0, "available_at": now, "created_at": now,
                     "give_up_at": give_up_at}
                    for delivery_id, (endpoint_id, event_id, event_type) in zip(new_ids("whd", len(pairs)), pairs,
                                                                                 strict=True)
                ])
            await session.execute(update(OutboundEvent).where(OutboundEvent.id.in_([e.id for e in events]))
                                  .values(dispatched=True))
        taken += len(events)
        if len(events) < limit:
            return taken


# ---- lanes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    id: str
    url: str
    secret: str


@dataclass(frozen=True)
class _Due:
    delivery_id: str
    attempts: int
    give_up_at: datetime
    event_id: str
    body: str


# Each runtime's running lanes (endpoint id -> its task), so that a pass starts none twice.
_lanes: dict[int, dict[str, asyncio.Task[None]]] = {}


def _lane_lease(settings: Settings) -> timedelta:
    """Long enough for one attempt and its bookkeeping: renewed after every attempt."""
    return outbox.lease(settings.webhook_delivery_timeout_seconds + settings.worker_lease_seconds)


async def start_lanes(rt: Runtime) -> int:
    """Lease endpoints with due deliveries to this worker, each served by a task of its own; returns how many."""
    running = _lanes.setdefault(id(rt), {})
    room = rt.settings.webhook_delivery_concurrency - len(running)
    if room <= 0:
        return 0
    async with rt.db.unit_of_work() as session:
        now = utcnow()
        due = exists().where(WebhookDelivery.endpoint_id == WebhookEndpoint.id, WebhookDelivery.status == "pending",
                             WebhookDelivery.available_at <= now)
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.disabled.is_(False), due).order_by(WebhookEndpoint.id)
        if running:
            stmt = stmt.where(WebhookEndpoint.id.not_in(list(running)))
        endpoints = (await session.scalars(outbox.due(stmt, WebhookEndpoint.lane_until, now, limit=room))).all()
        await _lease_lanes(session, [e.id for e in endpoints], now + _lane_lease(rt.settings))
        claimed = [_Endpoint(e.id, e.url, rt.cipher.decrypt(e.secret_encrypted)) for e in endpoints]
    for endpoint in claimed:
        task = asyncio.create_task(_run_lane(rt, endpoint), name=f"webhook lane {endpoint.id}")
        running[endpoint.id] = task
        task.add_done_callback(lambda _, endpoint_id=endpoint.id: _lane_done(rt, endpoint_id))
    return len(claimed)


async def _lease_lanes(session: AsyncSession, endpoint_ids: list[str], until: datetime) -> None:
    """Move the endpoints' lanes' lease, leaving `updated_at` to changes an admin makes."""
    if endpoint_ids:
        await session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids))
                              .values(lane_until=until, updated_at=WebhookEndpoint.updated_at))


def _lane_done(rt: Runtime, endpoint_id: str) -> None:
    running = _lanes.get(id(rt), {})
    running.pop(endpoint_id, None)
    if not running:
        _lanes.pop(id(rt), None)


async def settle(rt: Runtime) -> None:
    """Wait for this runtime's running lanes (tests, benchmarks and shutdown)."""
    while running := list(_lanes.get(id(rt), {}).values()):
        await asyncio.gather(*running, return_exceptions=True)


async def stop(rt: Runtime) -> None:
    """Cancel this runtime's lanes (the worker stops): an attempt cut short is made again by the next worker,
    under the same `webhook-id`, once the endpoint's lease runs out."""
    running = list(_lanes.get(id(rt), {}).values())
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


# Runtimes whose `deliver_events` runs now: the worker's passes and its loop of deliveries both call it.
_passing: set[int] = set()


async def deliver_events(rt: Runtime) -> int:
    """The worker's job: fan out new events, then start a lane for each endpoint with due deliveries. A call
    while another runs for the same runtime does nothing and returns 0 (that one does the work)."""
    if id(rt) in _passing:
        return 0
    _passing.add(id(rt))
    try:
        return await fan_out(rt) + await start_lanes(rt)
    finally:
        _passing.discard(id(rt))


def make_session(settings: Settings) -> aiohttp.ClientSession:
    """A lane's HTTP session: aiohttp rather than httpx, whose every request costs about ten times the CPU
    (measured in docs/performance.md) in the process that also credits payments. Redirects are never followed
    (a 3xx is not a delivery), time is bounded, nothing comes from the environment (no proxy), and a
    kept-alive connection per delivery in flight is reused for the lane's next ones."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.webhook_delivery_window),
        timeout=aiohttp.ClientTimeout(total=settings.webhook_delivery_timeout_seconds), trust_env=False,
        auto_decompress=False,
    )


async def _run_lane(rt: Runtime, endpoint: _Endpoint) -> None:
    """Deliver the endpoint's due deliveries until none is due or one fails: started in event order, at most
    `WEBHOOK_DELIVERY_WINDOW` in flight at once, so a receiver's round trips overlap and a slow answer holds up
    only its own slot. After a failure no more are started (the rest wait for the next pass: a receiver that is
    down costs one timeout per pass, not one per event); those in flight finish. Outcomes are recorded before
    each read of due deliveries (and at least every RECORD_EVERY_SECONDS): a worker that dies before recording
    one sends it again later, under the same `webhook-id`."""
    slots = asyncio.Semaphore(rt.settings.webhook_delivery_window)
    in_flight: dict[str, asyncio.Task[None]] = {}
    outcomes: list[_Outcome] = []
    failed = False

    async def attempt(session: aiohttp.ClientSession, current: _Endpoint, due: _Due) -> None:
        nonlocal failed
        try:
            outcome = await _attempt(rt, session, current, due)
            outcomes.append(outcome)
            failed = failed or outcome.error is not None
        except Exception:  # not recorded: the delivery stays due and is sent again (same `webhook-id`)
            log.exception("webhook delivery %s failed", due.delivery_id)
            failed = True
        finally:
            del in_flight[due.delivery_id]
            slots.release()

    async def record() -> None:
        nonlocal outcomes
        taken, outcomes = outcomes, []
        await _record(rt, endpoint.id, taken)

    try:
        async with make_session(rt.settings) as session, asyncio.TaskGroup() as attempts:
            while not failed:
                await record()
                recorded_at = time.monotonic()
                # neither one in flight nor one answered but not yet recorded is read (and sent) again
                taken = set(in_flight) | {outcome.due.delivery_id for outcome in outcomes}
                batch = await _due_batch(rt, endpoint.id, taken)
                if batch is None:
                    if not in_flight:
                        break
                    await asyncio.wait(list(in_flight.values()))  # then read once more: events made meanwhile
                    continue
                current, deliveries = batch
                for due in deliveries:
                    await slots.acquire()
                    if failed:
                        slots.release()
                        break
                    in_flight[due.delivery_id] = attempts.create_task(attempt(session, current, due),
                                                                      name=f"webhook delivery {due.delivery_id}")
                    if time.monotonic() - recorded_at >= RECORD_EVERY_SECONDS:
                        await record()
                        recorded_at = time.monotonic()
    except Exception:  # the lease runs out and the next pass takes the endpoint again
        log.exception("webhook lane %s failed", endpoint.id)
    finally:
        with contextlib.suppress(Exception):
            await _record(rt, endpoint.id, outcomes)
            async with rt.db.unit_of_work() as session:
                await _lease_lanes(session, [endpoint.id], utcnow())


async def _due_batch(rt: Runtime, endpoint_id: str, taken: set[str]) -> tuple[_Endpoint, list[_Due]] | None:
    """The endpoint as it is now (an admin may have changed its URL, secret or state) and its due deliveries,
    in event order, but for those the lane has `taken` already."""
    async with rt.db.unit_of_work() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.disabled:
            return None
        stmt = (
            select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.give_up_at, OutboundEvent.id,
                   OutboundEvent.type, OutboundEvent.created_at, OutboundEvent.data)
            .join(OutboundEvent, OutboundEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending",
                   WebhookDelivery.available_at <= utcnow())
            .order_by(WebhookDelivery.event_id).limit(LANE_BATCH)
        )
        if taken:
            stmt = stmt.where(WebhookDelivery.id.not_in(list(taken)))
        rows = (await session.execute(stmt)).all()
        if not rows:
            return None
        current = _Endpoint(endpoint.id, endpoint.url, rt.cipher.decrypt(endpoint.secret_encrypted))
    return current, [_Due(delivery_id, attempts, give_up_at, event_id, body(event_id, event_type, created_at, data))
                     for delivery_id, attempts, give_up_at, event_id, event_type, created_at, data in rows]


def body(event_id: str, event_type: str, created_at: datetime, data: str) -> str:
    """The JSON a receiver gets: the same bytes on every attempt (`data` is stored as JSON already)."""
    head = json.dumps({"id": event_id, "type": event_type, "created_at": created_at.isoformat()})
    return f'{head[:-1]}, "data": {data}}}'


def pinned(target: urls.Target, headers: dict[str, str]) -> tuple[str, dict[str, str], str | None]:
    """Where to send: the URL with its host replaced by the address just checked (outside the sandbox), so that
    the name cannot resolve elsewhere between the check and the connection, while the site is still named in
    `Host` and, for https, in the TLS server name (SNI and the certificate's check). Returns the URL, the
    headers and the TLS server name."""
    if target.address is None:
        return target.url, headers, None
    parts = urlsplit(target.url)  # checked: no credentials, so its netloc is the site's host[:port]
    address = f"[{target.address}]" if ":" in target.address else target.address
    netloc = address if parts.port is None else f"{address}:{parts.port}"
    server_name = target.host if parts.scheme == "https" else None
    return urlunsplit(parts._replace(netloc=netloc)), {**headers, "host": parts.netloc}, server_name


async def post(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: str,
               server_name: str | None) -> int:
    """The one network call of a delivery; returns the receiver's status code. At most ANSWER_BYTES_READ of
    the answer are read (a longer answer costs its connection, not memory)."""
    async with session.post(url, data=body.encode(), headers=headers, allow_redirects=False,
                            server_hostname=server_name) as response:
        await response.content.read(ANSWER_BYTES_READ)
        return response.status


@dataclass(frozen=True)
class _Outcome:
    due: _Due
    started_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


async def _attempt(rt: Runtime, session: aiohttp.ClientSession, endpoint: _Endpoint, due: _Due) -> _Outcome:
    """One attempt; its outcome is recorded by the lane."""
    started_at, started = utcnow(), time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        target = await urls.check(endpoint.url, rt.settings)
        url, headers, server_name = pinned(target, signing.signed_headers(endpoint.secret, due.event_id, due.body))
        status_code = await post(session, url, headers, due.body, server_name)  # the session's timeout bounds it
        if not 200 <= status_code < 300:
            error = f"answered {status_code}"
    except urls.RefusedURL as refused:
        error = f"refused: {refused}"
    except TimeoutError:
        error = "timed out"
    except aiohttp.ClientError as failure:
        error = f"{type(failure).__name__}: {failure}"
    latency_ms = round((time.perf_counter() - started) * 1000)
    return _Outcome(due, started_at, status_code, latency_ms, None if error is None else error[:ERROR_LENGTH])


async def _record(rt: Runtime, endpoint_id: str, outcomes: list[_Outcome]) -> None:
    """The outcomes in one transaction: each attempt, the deliveries delivered, retried later or failed, and
    the endpoint's lease renewed."""
    if not outcomes:
        return
    now = utcnow()
    delivered: dict[int | None, list[str]] = defaultdict(list)  # by status code
    async with rt.db.unit_of_work() as session:
        await session.execute(insert(WebhookAttempt), [
            {"delivery_id": o.due.delivery_id, "attempted_at": o.started_at, "status_code": o.status_code,
             "latency_ms": o.latency_ms, "error": o.error} for o in outcomes
        ])
        # only a pending delivery moves: an admin's retry or another worker's lease may have moved it meanwhile
        pending = WebhookDelivery.status == "pending"
        for outcome in outcomes:
            if outcome.error is None:
                delivered[outcome.status_code].append(outcome.due.delivery_id)
                continue
            attempts = outcome.due.attempts + 1
            values: dict[str, object] = {"attempts": attempts, "last_status_code": outcome.status_code,
                                         "last_error": outcome.error}
            if now + (wait := next_wait(attempts)) > outcome.due.give_up_at:
                result = "failed"
                values["status"] = "failed"
                log.warning("webhook delivery %s failed for good after %s attempts: %s", outcome.due.delivery_id,
                            attempts, outcome.error)
            else:
                result = "retry"
                values["available_at"] = now + wait
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == outcome.due.delivery_id,
                                                                pending).values(**values))
            metrics.OUTBOUND_DELIVERIES.labels(result=result).inc()
        for status_code, ids in delivered.items():
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids), pending).values(
                status="delivered", delivered_at=now, attempts=WebhookDelivery.attempts + 1,
                last_status_code=status_code, last_error=None))
            metrics.OUTBOUND_DELIVERIES.labels(result="delivered").inc(len(ids))
        await _lease_lanes(session, [endpoint_id], now + _lane_lease(rt.settings))


async def outbound_backlog(rt: Runtime) -> tuple[int, int]:
    """Events not yet turned into deliveries, and deliveries pending: what readiness reports."""
    async with rt.db.unit_of_work() as session:
        return await delivery_backlog(session)
