"""ORM tables of payout accounts (Paystack transfer recipients) and payouts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped, UTCDateTime, utcnow


class PayoutAccount(Timestamped, Base):
    """Where a person is paid: a bank account registered as a Paystack transfer recipient."""

    __tablename__ = "payout_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    bank_code: Mapped[str] = mapped_column(String(20))
    account_number_encrypted: Mapped[str] = mapped_column(Text)
    account_last4: Mapped[str] = mapped_column(String(4))
    account_name: Mapped[str] = mapped_column(String(200))
    recipient_code: Mapped[str] = mapped_column(String(64))


class Payout(Timestamped, Base):
    """Money owed to a person, sent as a Paystack transfer under one fixed reference."""

    __tablename__ = "payouts"
    __table_args__ = (Index("ix_payouts_status_available_at", "status", "available_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # pending (| awaiting_funds) -> processing (| awaiting_otp) -> paid | failed | reversed; see statuses.py
    status: Mapped[str] = mapped_column(String(20), default="pending")
    reference: Mapped[str] = mapped_column(String(50), unique=True)
    reason: Mapped[str] = mapped_column(String(20))  # release | share_sale | distribution
    source_id: Mapped[str] = mapped_column(String(64))
    recipient_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    transfer_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    batch_reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def awaiting_payout_account(self) -> bool:
        return self.recipient_code is None


