"""ORM tables of holdings and share movements (the history the cap table is rebuilt from)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow


class Holding(Base):
    __tablename__ = "holdings"
    __table_args__ = (
        UniqueConstraint("app_id", "user_id"),
        CheckConstraint("reserved_shares >= 0 AND reserved_shares <= shares", name="reserved_within_shares"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    shares: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_shares: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ShareMovement(Base):
    """Every change to a holding, so the cap table at any past instant can be rebuilt."""

    __tablename__ = "share_movements"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    from_user_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    to_user_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    shares: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))  # issue | cancel | transfer
    source_id: Mapped[str] = mapped_column(String(64))  # the payment, deposit or transfer behind it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
