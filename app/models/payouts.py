"""ORM tables of payout accounts (Paystack transfer recipients) and payouts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped, UTCDateTime, utcnow


class PayoutAccount(Timestamped, Base):
    """Where a person is paid: a bank account or mobile-money wallet registered as a Paystack transfer
    recipient. A person holds any number; one per currency is the default, and payouts in that currency go
    to it (a partial unique index holds the rule)."""

    __tablename__ = "payout_accounts"
    __table_args__ = (
        UniqueConstraint("user_id", "recipient_code"),
        Index("uq_payout_accounts_default", "user_id", "currency", unique=True,
              postgresql_where=text("is_default"), sqlite_where=text("is_default")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    # Paystack's recipient type: nuban, ghipss, mobile_money, mobile_money_business, kepss, basa
    type: Mapped[str] = mapped_column(String(30))
    bank_code: Mapped[str] = mapped_column(String(20))
    account_number_encrypted: Mapped[str] = mapped_column(Text)
    account_last4: Mapped[str] = mapped_column(String(4))
    account_name: Mapped[str] = mapped_column(String(200))
    recipient_code: Mapped[str] = mapped_column(String(64))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # South Africa's account validation: personal | business, and the holder's document (its number encrypted).
    account_type: Mapped[str | None] = mapped_column(String(20), nullable=True)
    document_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    document_number_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)


class Payout(Base):
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
    # Also the database's (its time at the transaction's start) for rows inserted without them: a
    # distribution's COPY of 100,000 payouts leaves these three out, since encoding them took 0.18 s of the
    # COPY's 0.22 s of client CPU (measured).
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow,
                                                 server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def awaiting_payout_account(self) -> bool:
        return self.recipient_code is None

    @property
    def shown_status(self) -> str:
        """The status as answers show it: a pending payout with no account to go to is
        `awaiting_payout_account` (stored as `pending`, so that the worker's queue stays one status)."""
        return "awaiting_payout_account" if self.status == "pending" and self.recipient_code is None else self.status


