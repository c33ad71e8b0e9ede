"""ORM tables of outbound events: the outbox every domain writes in its own transaction, who each event is
about, the platform's webhook endpoints, and each endpoint's deliveries with their attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, Timestamped, UTCDateTime, utcnow

EVENT_TYPE_LENGTH = 64


class OutboundEvent(Base):
    """Something that happened, written in the transaction of the change it reports: it exists exactly when
    the change committed. `data` is the resource as the API answers it (JSON)."""

    __tablename__ = "outbound_events"
    # the fan-out's queue: events not yet turned into deliveries, oldest first
    __table_args__ = (Index("ix_outbound_events_dispatched_id", "dispatched", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(EVENT_TYPE_LENGTH), index=True)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)


class EventSubject(Base):
    """A user an event is about (the payer, the app's owner, an approver...): `GET /v1/events/me` reads these."""

    __tablename__ = "event_subjects"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)


class WebhookEndpoint(Timestamped, Base):
    """A URL of the platform's that receives the events it subscribed to, signed with its own secret."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # event types, or ["*"]
    description: Mapped[str] = mapped_column(String(500), default="")
    secret_encrypted: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # One worker delivers an endpoint's events at a time, in order: the lane is leased until then.
    lane_until: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: pending until a 2xx (delivered) or until retries run out (failed)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_endpoint_id_status_available_at", "endpoint_id", "status", "available_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(EVENT_TYPE_LENGTH))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending -> delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # retried until then, then failed (an admin's retry starts a new window)
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: what the receiver answered, how long it took, or why it failed."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(40), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
