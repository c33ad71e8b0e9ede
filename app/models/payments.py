"""ORM tables of payments, the webhook inbox, refunds and Idempotency-Key records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, Timestamped, UTCDateTime, utcnow

# Longer than any reference this service issues (`pay-` + time + random, about 32 characters).
REFERENCE_LENGTH = 64


class Payment(Timestamped, Base):
    """A payment intent: what we asked the gateway to collect, and what happened to it."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    reference: Mapped[str] = mapped_column(String(REFERENCE_LENGTH), unique=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    payment_type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    email: Mapped[str] = mapped_column(String(320))
    channels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    access_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    authorization_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # what the payment buys, by type
    shares: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    share_transfer_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    period: Mapped[str | None] = mapped_column(String(7), nullable=True)
    # what the gateway said
    gateway_transaction_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    authorization_code_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Paystack's fee on the charge, and what the customer paid: `amount`, or `amount` plus the fee
    # when the integration passes its fees on to customers.
    gateway_fee: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    charged_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    flag_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    outcome_note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)

    @property
    def flagged(self) -> bool:
        """Left for an admin: the gateway's charge did not match what was asked for."""
        return self.flag_reason is not None


class WebhookEvent(Base):
    """The webhook inbox: each gateway event stored once, processed by a worker."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_status_available_at", "status", "available_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[str] = mapped_column(Text)  # event and data, redacted (inbox.redact_payload)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Refund(Timestamped, Base):
    """Money going back to a payer through the gateway. Written first, sent at most once by a job after commit."""

    __tablename__ = "refunds"
    __table_args__ = (Index("ix_refunds_status_available_at", "status", "available_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(40), index=True)
    escrow_transaction_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # pending (not sent) -> sending (claimed, the call is being made) -> sent (the gateway has it) ->
    # processed | failed; unknown: the call may have acted but we did not hear back; needs_attention:
    # the gateway's needs-attention (see RefundStatus's table in app.models.statuses)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    reason: Mapped[str] = mapped_column(String(500), default="")
    # where the money goes back to if the gateway fails the refund
    return_account: Mapped[str] = mapped_column(String(200))
    gateway_refund_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    # times the worker took it: to send (again only after a rate limit), or to ask the gateway about it
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # when the worker may next take it: send it, end a `sending` lease, or ask the gateway
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # when POST /refund was made (the claim); an unknown outcome is given up on counting from here
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(200))  # method and route
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="in_progress")
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("uq_idempotency_keys_user_id_key", "user_id", "key", unique=True),)
