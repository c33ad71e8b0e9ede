"""ORM tables of share transfers, distributions and their allocations per holder."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, Timestamped, UTCDateTime, utcnow


class ShareTransfer(Timestamped, Base):
    """A seller's offer of reserved shares to one buyer, completed when the buyer's payment succeeds."""

    __tablename__ = "share_transfers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    seller_id: Mapped[str] = mapped_column(String(128), index=True)
    buyer_id: Mapped[str] = mapped_column(String(128), index=True)
    shares: Mapped[int] = mapped_column(BigInteger)
    price_per_share: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    platform_fee: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # pending -> completed | cancelled | expired
    status: Mapped[str] = mapped_column(String(20), default="pending")
    payment_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def seller_receives(self) -> int:
        """Minor units: the price less the platform's fee."""
        return self.amount - self.platform_fee


class Distribution(Base):
    """Revenue of one app, period and currency shared out over the holders."""

    __tablename__ = "distributions"
    __table_args__ = (UniqueConstraint("app_id", "period", "currency"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    period: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    platform_fee: Mapped[int] = mapped_column(BigInteger)
    net_amount: Mapped[int] = mapped_column(BigInteger)
    allocations: Mapped[int] = mapped_column(Integer)
    total_shares: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="completed")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def dry_run(self) -> bool:
        """A stored distribution is never a dry run (a dry run's answer is built from its plan)."""
        return False


class DistributionAllocation(Base):
    __tablename__ = "distribution_allocations"
    __table_args__ = (UniqueConstraint("distribution_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    distribution_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    shares: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    payout_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
