"""The one way a domain emits an event: `emit(session, type, data, subjects=...)` adds it to the outbox in the
caller's transaction, so the event commits, or rolls back, with the change it reports. `emit_all` writes many
at once (a batch of credited charges): the same rows, in two INSERT statements instead of the unit of work's
bookkeeping of two objects per event."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.catalogue import EVENT_TYPES
from app.models.base import new_id, new_ids, utcnow
from app.models.events import EventSubject, OutboundEvent


class NewEvent(NamedTuple):
    """Event `type` about `data` (the resource as the API answers it: its response schema, or that schema's
    JSON); `subjects` are the users it is about, who see it in `GET /v1/events/me`."""

    type: str
    data: BaseModel | Mapping[str, Any]
    subjects: Iterable[str | None] = ()


def _rows(event: NewEvent, event_id: str, created_at: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The outbox row of `event` and its subjects' rows."""
    if event.type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event.type!r}: add it to app/events/catalogue.py")
    # pydantic writes a model's JSON itself, at about a third of the CPU of dumping it to a dict and encoding that.
    data = (event.data.model_dump_json() if isinstance(event.data, BaseModel)
            else json.dumps(dict(event.data), separators=(",", ":")))
    row = {"id": event_id, "type": event.type, "data": data,
           "created_at": created_at, "dispatched": False}
    return row, [{"user_id": user_id, "event_id": event_id}
                 for user_id in sorted({user_id for user_id in event.subjects if user_id})]


def emit(
    session: AsyncSession,
    type: str,
    data: BaseModel | Mapping[str, Any],
    *,
    subjects: Iterable[str | None] = (),
) -> str:
    """Write one event in the session's transaction; returns its id. Nothing is sent here: the worker
    delivers after the commit."""
    event_id = new_id("evt")
    row, subject_rows = _rows(NewEvent(type, data, subjects), event_id, utcnow())
    session.add(OutboundEvent(**row))
    session.add_all(EventSubject(**subject_row) for subject_row in subject_rows)
    return event_id


async def emit_all(session: AsyncSession, events: Sequence[NewEvent]) -> list[str]:
    """Write `events`, in order, in the session's transaction; returns their ids."""
    if not events:
        return []
    now = utcnow()
    rows, subject_rows = [], []
    for event, event_id in zip(events, new_ids("evt", len(events)), strict=True):
        row, subjects = _rows(event, event_id, now)
        rows.append(row)
        subject_rows += subjects
    await session.execute(insert(OutboundEvent.__table__), rows)
    if subject_rows:
        await session.execute(insert(EventSubject.__table__), subject_rows)
    return [row["id"] for row in rows]
