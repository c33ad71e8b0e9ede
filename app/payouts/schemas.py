"""Request and answer bodies of payout accounts (account numbers shown by their last four digits) and
payouts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field

from app.core.schemas import FromRow, Money, StrictModel

RecipientType = Literal["nuban", "ghipss", "mobile_money", "mobile_money_business", "kepss", "basa"]


class PayoutAccountIn(StrictModel):
    bank_code: str = Field(min_length=1, max_length=20, pattern=r"^[0-9A-Za-z]+$")
    # Five digits at least: an M-PESA till number is as short as that.
    account_number: str = Field(min_length=5, max_length=20, pattern=r"^[0-9]+$")
    currency: str = Field(min_length=3, max_length=3)
    account_name: str | None = Field(default=None, min_length=1, max_length=200)
    # Paystack's recipient type; by default the currency's bank account type (KES: mobile money).
    type: RecipientType | None = None
    # South Africa only: what POST /bank/validate checks.
    account_type: Literal["personal", "business"] | None = None
    document_type: Literal["identityNumber", "passportNumber", "businessRegistrationNumber"] | None = None
    document_number: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[0-9A-Za-z/]+$")


class BankOut(BaseModel):
    code: str
    name: str
    type: str | None
    currency: str


class BankList(BaseModel):
    items: list[BankOut]


class PayoutAccountOut(FromRow):
    id: str
    user_id: str
    currency: str
    type: str
    bank_code: str
    last4: str = Field(validation_alias=AliasChoices("last4", "account_last4"))
    # The same four digits under the name the first version of the API gave them.
    account_number_last4: str = Field(validation_alias=AliasChoices("account_number_last4", "account_last4"))
    account_name: str
    recipient_code: str
    is_default: bool
    account_type: str | None
    document_type: str | None
    created_at: datetime
    updated_at: datetime


class PayoutAccountList(BaseModel):
    items: list[PayoutAccountOut]


class PayoutOut(FromRow):
    id: str
    user_id: str
    amount: Money
    currency: str
    # `awaiting_payout_account` for a pending payout with no account in its currency to go to
    status: str = Field(validation_alias=AliasChoices("shown_status", "status"))
    reference: str
    reason: str
    source_id: str
    awaiting_payout_account: bool
    attempts: int
    last_error: str | None
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime
