"""The webhook inbox: events are stored once when they arrive (account numbers and authorization
codes redacted) and processed by the worker (`app/webhooks/tasks.py`).

What each event name does is the `EventHandlers` table the wiring gives the runtime; events nobody
handles are stored and marked ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.db import insert_on_conflict
from app.core.logging import redact
from app.models import WebhookEvent
from app.models.base import utcnow
from app.runtime import Runtime

log = logging.getLogger(__name__)

EventHandler = Callable[[Runtime, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class EventHandlers:
    """Event name -> what applies it (returns "processed" or "ignored")."""

    by_event: Mapping[str, EventHandler]

MAX_ATTEMPTS = 12
# Events of a claimed batch handled at once: their gateway calls overlap and their charges share commits.
# A crediting commit costs about the same whatever its size, so the more charges wait for each, the less
# each pays: 128 in flight make crediting batches of about 50, where 48 made about 20. Inside the API process
# too, where the handlers share the event loop with the webhook intake: credited/s 20-36% higher than with
# 48 (gateway elsewhere), the intake's p50 about the same and its p99 about 1.7 times. Measured in
# docs/performance.md.
CONCURRENCY = 128
# Paystack's bodies nest five levels (event, data, log, history, entry); far deeper is not Paystack's.
MAX_EVENT_DEPTH = 32
EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEDUP_KEY_LENGTH = 200


class RetryLater(Exception):
    """The event cannot be applied yet (e.g. the gateway is down): try again after a backoff."""


class MalformedEvent(Exception):
    """The event's data can never be applied (a field of the wrong type, or longer than anything it could
    name): the event is kept as ignored, with the reason, and never retried."""


def text_field(data: dict[str, Any], key: str, *, max_length: int) -> str | None:
    """`data[key]` as text (Paystack sends ids as integers, references as strings), None when absent.
    MalformedEvent for anything else, or for text longer than anything it could name."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent(f"{key} is not a string")
    text = str(value)
    if len(text) > max_length or not text.isprintable():
        raise MalformedEvent(f"{key} is not printable text of at most {max_length} characters")
    return text


def amount_field(data: dict[str, Any], key: str) -> int | None:
    """`data[key]` as an amount in minor units (an integer, or digits in a string as some of Paystack's
    bodies carry it), None when absent. MalformedEvent for anything else."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise MalformedEvent(f"{key} is not an amount in minor units")
    return value


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
    key = f"{event}:{ident}"
    if len(key) <= DEDUP_KEY_LENGTH and key.isprintable():
        return key
    # Paystack's ids and references are short and printable; anything else still gets a key of its own.
    return f"{event}:sha256:{hashlib.sha256(str(ident).encode('utf-8', 'backslashreplace')).hexdigest()}"


REDACTED = "[redacted]"


def redact_payload(value: Any) -> Any:
    """A copy of a webhook's JSON with what must never be stored in clear taken out, at any depth:
    authorization codes (`authorization.authorization_code`, also in a dispute's transaction) are
    replaced, account numbers (`recipient.details.account_number`, `receiver_bank_account_number`,
    any key that holds `account_number`) keep their last 4 digits only.

    Redacted rather than encrypted: no handler reads these fields (each asks the gateway for the
    facts it acts on), so there is nothing to decrypt later, and the webhook hot path pays one walk
    of the body it has already parsed instead of a Fernet encryption per event."""
    kind = type(value)  # exact types, as json.loads makes them: this runs on every webhook
    if kind is dict:
        return _redact_object(value)
    if kind is list:
        return [redact_payload(item) for item in value]
    return value


def _redact_object(body: dict[str, Any]) -> dict[str, Any]:
    redacted = {}
    for key, item in body.items():
        kind = type(item)
        if kind is dict:
            item = _redact_object(item)
        elif kind is list:
            item = [redact_payload(element) for element in item]
        elif item is None or kind is bool:
            pass
        elif key == "authorization_code":
            item = REDACTED
        elif "account_number" in key and (kind is str or kind is int):
            item = _last4(str(item))
        redacted[key] = item
    return redacted


def _last4(number: str) -> str:
    return "*" * len(number) if len(number) <= 4 else "*" * (len(number) - 4) + number[-4:]


@dataclass(frozen=True)
class Arrival:
    """A webhook as it arrived, its signature checked on the raw bytes: what the inbox stores."""

    event: str
    data: dict[str, Any]
    raw_body: bytes = b""  # kept for a body the inbox cannot read: its key and its stored text
    # Why a signed body is not an event the inbox can process; it is then stored as ignored.
    unreadable: str | None = None

    @cached_property  # asked for by the group commit's key and twice by the insert
    def dedup_key(self) -> str:
        if self.unreadable is not None:
            return f"unreadable:{hashlib.sha256(self.raw_body).hexdigest()}"
        return dedup_key(self.event, self.data)

    @property
    def payload(self) -> str:
        """What the payload column keeps. An event: its name and data, redacted (the raw bytes were
        only needed for the signature). An unreadable body: its text with bytes that are not UTF-8 and
        NULs (which PostgreSQL's text cannot hold) escaped, and what `redact` recognises taken out."""
        if self.unreadable is None:
            return json.dumps({"event": self.event, "data": redact_payload(self.data)},
                              separators=(",", ":"), ensure_ascii=False)
        return redact(self.raw_body.decode("utf-8", "backslashreplace").replace("\x00", "\\x00"))


def read_arrival(body: bytes) -> Arrival:
    """A signed webhook body as the inbox stores it; never raises. A body that is not a Paystack event
    (not UTF-8 JSON, nested too deep, not an object with an event name and a data object) is Paystack's
    all the same, since its signature holds: it is kept as unreadable, with the reason, rather than
    refused and sent again for days."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Arrival("", {}, body, unreadable="the body is not UTF-8")
    too_deep = f"the body nests deeper than {MAX_EVENT_DEPTH} levels"
    try:
        payload = json.loads(text)
    except RecursionError:
        return Arrival("", {}, body, unreadable=too_deep)
    except ValueError:
        return Arrival("", {}, body, unreadable="the body is not JSON")
    # No deeper than it has brackets: most bodies are cleared by the count alone, without the walk.
    if text.count("{") + text.count("[") > MAX_EVENT_DEPTH and _depth_exceeds(payload, MAX_EVENT_DEPTH):
        return Arrival("", {}, body, unreadable=too_deep)
    if not isinstance(payload, dict):
        return Arrival("", {}, body, unreadable="the body is not a JSON object")
    event, data = payload.get("event"), payload.get("data")
    if not isinstance(event, str) or not EVENT_NAME.fullmatch(event):
        return Arrival("", {}, body, unreadable="event is not an event name")
    if not isinstance(data, dict):
        return Arrival(event, {}, body, unreadable="data is not an object")
    return Arrival(event, data, body)


def _depth_exceeds(value: object, limit: int) -> bool:
    """Whether JSON `value` nests more than `limit` levels; iterative, so depth cannot exhaust the stack."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict):
            children: list[Any] = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if level > limit:
            return True
        pending.extend((child, level + 1) for child in children)
    return False


async def store_events(session: AsyncSession, arrivals: list[Arrival]) -> list[bool]:
    """Insert the events that are not duplicates, in one round trip; True for each one that is new.
    Arrivals with the same dedup key must not share a call (the group commit's key sees to it)."""
    now = utcnow()
    # One statement compiled once for any number of rows: SQLAlchemy batches the parameter sets
    # into multi-row INSERTs itself ("insertmanyvalues"), RETURNING included. Into the table, not the
    # mapped class: the ORM's bulk insert cost about a fifth more CPU per event (docs/performance.md).
    table = WebhookEvent.__table__
    stored = set((await session.execute(
        insert_on_conflict(session, table).on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(table.c.dedup_key),
        [{"event": a.event, "dedup_key": a.dedup_key, "payload": a.payload,
          "status": "pending" if a.unreadable is None else "ignored", "last_error": a.unreadable,
          "processed_at": None if a.unreadable is None else now,
          "attempts": 0, "available_at": now, "received_at": now} for a in arrivals],
    )).scalars())
    return [a.dedup_key in stored for a in arrivals]


async def store_event(rt: Runtime, arrival: Arrival) -> bool:
    """Store one arriving event, sharing the transaction with those arriving at the same time.
    Returns True if it is new."""
    commits = rt.group_commit("webhook inbox", store_events, committed=metrics.WEBHOOK_INTAKE_BATCH_SIZE.observe)
    new = bool(await commits.submit(arrival, key=arrival.dedup_key))
    if new and arrival.unreadable is not None:
        log.warning("signed webhook body stored as ignored: %s", arrival.unreadable)
        metrics.WEBHOOK_EVENTS.labels(event=metrics.event_label(arrival.event), result="unreadable").inc()
    return new


async def backlog(session: AsyncSession) -> int:
    due = or_(WebhookEvent.status == "pending", WebhookEvent.status == "processing")
    return await session.scalar(select(func.count()).select_from(WebhookEvent).where(due)) or 0


@dataclass(frozen=True)
class InboxHealth:
    waiting: int  # pending or processing, due or not
    oldest_due_at: datetime | None  # since when the longest-waiting due event could have been taken
    last_received_at: datetime | None  # the newest event accepted


async def inbox_health(session: AsyncSession, now: datetime) -> InboxHealth:
    """What readiness needs to tell a stalled inbox from a busy one: a running worker takes a due event
    within a pass (and moves its `available_at` forward as a lease), so a due event waiting long means no
    worker takes them. Events waiting out a retry's backoff are not due. Cheap: the status index, the key."""
    waiting = await backlog(session)
    oldest_due_at = await session.scalar(
        select(func.min(WebhookEvent.available_at))
        .where(WebhookEvent.status.in_(("pending", "processing")), WebhookEvent.available_at <= now)
    )
    last_received_at = await session.scalar(
        select(WebhookEvent.received_at).order_by(WebhookEvent.id.desc()).limit(1)
    )
    return InboxHealth(waiting=waiting, oldest_due_at=oldest_due_at, last_received_at=last_received_at)
