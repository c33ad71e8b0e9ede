"""ORM table of the automatic distributions queue: one row per app, period and currency whose revenue
was paid in while `ENABLE_AUTOMATIC_DISTRIBUTIONS` is on, taken by the worker to make its distribution."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, Timestamped, UTCDateTime, utcnow


class AutomaticDistribution(Timestamped, Base):
    """Unique per (app, period, currency): however often a success is seen, one row, hence one
    distribution (which `distributions` also holds unique)."""

    __tablename__ = "automatic_distributions"
    __table_args__ = (
        UniqueConstraint("app_id", "period", "currency"),
        Index("ix_automatic_distributions_status_available_at", "status", "available_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    # pending -> done (distribution_id set) | skipped (nothing to distribute, or one was made by hand)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    distribution_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
