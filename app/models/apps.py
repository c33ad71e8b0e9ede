"""ORM table of apps: owner, approvers, share price and count, lock-in and platform fee."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped


class App(Timestamped, Base):
    """Something investors can buy shares in."""

    __tablename__ = "apps"
    __table_args__ = (
        CheckConstraint("shares_issued >= 0 AND shares_issued <= total_shares", name="shares_within_total"),
        CheckConstraint("share_price > 0", name="share_price_positive"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[str] = mapped_column(String(128), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    share_price: Mapped[int] = mapped_column(BigInteger)  # minor units
    total_shares: Mapped[int] = mapped_column(BigInteger)
    shares_issued: Mapped[int] = mapped_column(BigInteger, default=0)
    approvers: Mapped[list[str]] = mapped_column(JSON, default=list)
    required_approvals: Mapped[int] = mapped_column(Integer, default=1)
    lock_in_days: Mapped[int] = mapped_column(Integer, default=0)
    platform_fee_hundredths: Mapped[int] = mapped_column(Integer, default=0)  # percent x 100

    @property
    def shares_available(self) -> int:
        return self.total_shares - self.shares_issued
