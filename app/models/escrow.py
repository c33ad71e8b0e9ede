"""ORM tables of escrow: transactions (deposits, releases, refunds), milestones, release requests with
their items and approvals, disputes."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, Timestamped, UTCDateTime, utcnow


class EscrowTransaction(Timestamped, Base):
    """A deposit into an app's escrow, or a release or refund out of one deposit."""

    __tablename__ = "escrow_transactions"
    __table_args__ = (
        CheckConstraint(
            "released >= 0 AND refunded >= 0 AND frozen >= 0 AND released + refunded + frozen <= amount",
            name="within_amount",
        ),
        Index("ix_escrow_transactions_app_id_type", "app_id", "type"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))  # deposit | release | refund
    app_id: Mapped[str] = mapped_column(String(64))
    investor_id: Mapped[str] = mapped_column(String(128), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    payment_gateway: Mapped[str] = mapped_column(String(20), default="PAYSTACK")
    gateway_reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # a deposit is made by exactly one payment
    payment_id: Mapped[str | None] = mapped_column(String(40), nullable=True, unique=True)
    deposit_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    milestone_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    release_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    refund_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    shares: Mapped[int] = mapped_column(BigInteger, default=0)
    # deposits only: what has left it or is held back from it
    released: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    frozen: Mapped[int] = mapped_column(BigInteger, default=0)

    @property
    def remaining(self) -> int:
        """A deposit's minor units neither released nor refunded (frozen ones included)."""
        return self.amount - self.released - self.refunded


class Milestone(Timestamped, Base):
    __tablename__ = "milestones"
    # the worker's overdue scan: pending milestones by due date
    __table_args__ = (Index("ix_milestones_status_due_date", "status", "due_date"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    release_percentage: Mapped[int] = mapped_column(Integer)  # hundredths of a percent
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending -> completed -> released
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Set once, by the worker, when the milestone passed its due date still pending.
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def overdue(self) -> bool:
        """Past its due date and still waiting to be completed."""
        return self.overdue_at is not None and self.status == "pending"


class ReleaseRequest(Timestamped, Base):
    """Money asked to leave escrow for a completed milestone; executes after M-of-N approval."""

    __tablename__ = "release_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    milestone_id: Mapped[str] = mapped_column(String(40), index=True)
    transaction_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    release_percentage: Mapped[int] = mapped_column(Integer)
    required_approvals: Mapped[int] = mapped_column(Integer)
    needs_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending_approval -> approved -> released; or rejected
    status: Mapped[str] = mapped_column(String(20), default="pending_approval")
    requested_by: Mapped[str] = mapped_column(String(128))
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ReleaseItem(Base):
    """One deposit's part of a release.

    A milestone is released at most once per deposit: `live` is true while the release is pending,
    approved or released, and NULL once it is rejected. NULLs never collide in a unique constraint
    (PostgreSQL and SQLite alike), so the database holds one live item per (milestone, deposit) and
    a rejected release frees its deposits for a new request.
    """

    __tablename__ = "release_items"
    __table_args__ = (
        UniqueConstraint("release_id", "deposit_id"),
        UniqueConstraint("milestone_id", "deposit_id", "live"),
        CheckConstraint("live", name="live_true_or_null"),  # false would block like true: never store it
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    release_id: Mapped[str] = mapped_column(ForeignKey("release_requests.id"), index=True)
    deposit_id: Mapped[str] = mapped_column(String(40), index=True)
    milestone_id: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
    live: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=True)


class ReleaseApproval(Base):
    __tablename__ = "release_approvals"
    __table_args__ = (UniqueConstraint("release_id", "approver_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    release_id: Mapped[str] = mapped_column(ForeignKey("release_requests.id"), index=True)
    approver_id: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(10))  # approve | reject
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


GATEWAY_DISPUTE_ID_LENGTH = 64


class Dispute(Timestamped, Base):
    """Disputed money of one deposit, frozen until resolved."""

    __tablename__ = "disputes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(40), index=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    investor_id: Mapped[str] = mapped_column(String(128), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open -> resolved
    source: Mapped[str] = mapped_column(String(20), default="investor")  # investor | gateway
    gateway_dispute_id: Mapped[str | None] = mapped_column(String(GATEWAY_DISPUTE_ID_LENGTH), nullable=True,
                                                           unique=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    outcome_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    resolution_note: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Chargebacks: the resolution Paystack sent, and why the service left the money frozen for an admin
    # (a resolution it does not know, or one the rest of the event contradicts).
    gateway_resolution: Mapped[str | None] = mapped_column(String(64), nullable=True)
    flag_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)

    @property
    def flagged(self) -> bool:
        """Left frozen for an admin: the chargeback's resolution was unclear."""
        return self.flag_reason is not None
