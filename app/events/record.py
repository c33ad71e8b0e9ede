"""The one way a domain emits an event: `emit(session, type, data, subjects=...)` adds it to the outbox in the
caller's transaction, so the event commits, or rolls back, with the change it reports."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.catalogue import EVENT_TYPES
from app.models.base import new_id, utcnow
from app.models.events import EventSubject, OutboundEvent


def emit(
    session: AsyncSession,
    type: str,
    data: BaseModel | Mapping[str, Any],
    *,
    subjects: Iterable[str | None] = (),
) -> str:
    """Write event `type` about `data` (the resource as the API answers it: its response schema, or that
    schema's JSON) in the session's transaction; `subjects` are the users it is about, who see it in
    `GET /v1/events/me`. Returns the event's id. Nothing is sent here: the worker delivers after the commit."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}: add it to app/events/catalogue.py")
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
    event_id = new_id("evt")
    session.add(OutboundEvent(id=event_id, type=type, data=json.dumps(payload, separators=(",", ":")),
                              created_at=utcnow(), dispatched=False))
    session.add_all(EventSubject(user_id=user_id, event_id=event_id)
                    for user_id in sorted({user_id for user_id in subjects if user_id}))
    return event_id
