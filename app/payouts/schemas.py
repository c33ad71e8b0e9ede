"""Request and answer bodies of payout accounts (account numbers shown by their last four digits) and
payouts."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.core.schemas import FromRow, Money, StrictModel


class PayoutAccountIn(StrictModel):
    bank_code: str = Field(min_length=1, max_length=20, pattern=r"^[0-9A-Za-z]+$")
    account_number: str = Field(min_length=6, max_length=20, pattern=r"^[0-9]+$")
    currency: str = Field(min_length=3, max_length=3)
    account_name: str | None = Field(default=None, max_length=200)


class FinalizeIn(StrictModel):
    """The OTP Paystack sent to the business for a transfer it holds."""

    otp: str = Field(min_length=4, max_length=12, pattern=r"^[0-9]+$")


class BankOut(BaseModel):
    code: str
    name: str
    type: str | None
    currency: str


class BankList(BaseModel):
    items: list[BankOut]


class PayoutAccountOut(FromRow):
    user_id: str
    currency: str
    bank_code: str
    account_number_last4: str = Field(validation_alias="account_last4")
    account_name: str
    recipient_code: str
    updated_at: datetime


class PayoutOut(FromRow):
    id: str
    user_id: str
    amount: Money
    currency: str
    status: str
    reference: str
    reason: str
    source_id: str
    awaiting_payout_account: bool
    attempts: int
    last_error: str | None
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime
