"""Bodies and answers of the webhook endpoint routes and the event lists."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.schemas import FromRow, StrictModel, one_of
from app.events.catalogue import ALL, EVENT_TYPES
from app.events.urls import MAX_URL_LENGTH
from app.models.events import OutboundEvent

MAX_FILTERS = len(EVENT_TYPES) + 1
EventType = Annotated[str, one_of(EVENT_TYPES)]


def _known(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted({name for name in value if name != ALL and name not in EVENT_TYPES})
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(unknown)} (see docs/events.md)")
    if ALL in value and len(value) > 1:
        raise ValueError('"*" subscribes to every event and stands alone')
    return sorted(set(value))


class WebhookEndpointIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "url": "https://platform.example.com/hooks/payments", "events": ["payment.succeeded", "payout.failed"],
        "description": "the platform's notifications"}]})

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH,
                     description="Where events are POSTed: https (http too in the sandbox), a public address")
    events: list[str] = Field(min_length=1, max_length=MAX_FILTERS,
                              description='Event types to receive, or ["*"] for every one')
    description: str = Field(default="", max_length=500, description="What the endpoint is for, in words")

    _events = field_validator("events")(_known)


class WebhookEndpointPatch(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"disabled": True}, {"rotate_secret": True}]})

    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH,
                            description="A new address (checked like the first)")
    events: list[str] | None = Field(default=None, min_length=1, max_length=MAX_FILTERS,
                                     description='New event types to receive, or ["*"]')
    description: str | None = Field(default=None, max_length=500, description="A new description")
    disabled: bool | None = Field(default=None, description="A disabled endpoint is sent nothing")
    rotate_secret: bool = Field(default=False, description="Replace the signing secret; the answer shows the "
                                "new one, once")

    _events = field_validator("events")(_known)


class WebhookEndpointOut(FromRow):
    id: str
    url: str = Field(description="Where events are POSTed")
    events: list[str] = Field(description='The event types it receives, or ["*"]')
    description: str = Field(description="What the endpoint is for")
    disabled: bool = Field(description="Whether it is sent nothing")
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(default=None, description="The signing secret (`whsec_...`): shown only when "
                               "the endpoint is created and when its secret is rotated")


class AttemptOut(FromRow):
    attempted_at: datetime = Field(description="When the attempt was made")
    status_code: int | None = Field(description="The receiver's HTTP status, null if none came")
    latency_ms: int = Field(description="How long the receiver took to answer, in milliseconds")
    error: str | None = Field(description="Why the attempt failed (timeout, refused address, status), if it did")


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str = Field(description="The endpoint it goes to")
    event_id: str = Field(description="The event it carries (its `webhook-id`)")
    event_type: EventType = Field(description="The event's type")
    status: Annotated[str, one_of(("pending", "delivered", "failed"))] = Field(
        description="pending | delivered | failed")
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next")
    give_up_at: datetime = Field(description="When a delivery still failing is marked failed")
    created_at: datetime
    delivered_at: datetime | None = Field(description="When a 2xx came back")
    attempts: list[AttemptOut] = Field(description="Every attempt, oldest first (the last 50)")


class EventOut(BaseModel):
    id: str
    type: EventType = Field(description="What happened (see docs/events.md)")
    created_at: datetime
    data: dict[str, Any] = Field(description="The resource as the API answers it")

    @classmethod
    def of(cls, event: OutboundEvent) -> EventOut:
        return cls(id=event.id, type=event.type, created_at=event.created_at, data=json.loads(event.data))
