from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped


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
    shares: Mapped[int] = mapped_column(BigInteger, default=0)
    # deposits only: what has left it or is held back from it
    released: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    frozen: Mapped[int] = mapped_column(BigInteger, default=0)
