"""Request and answer bodies of payout accounts (account numbers shown by their last four digits) and
payouts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import CurrencyCode, CurrencyInput, FromRow, Money, StrictModel, one_of
from app.models.statuses import PayoutStatus


class PayoutAccountIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "bank_code": "057", "account_number": "0123456789", "currency": "NGN", "account_name": "Ada Investor"}]})

    bank_code: str = Field(min_length=1, max_length=20, pattern=r"^[0-9A-Za-z]+$",
        description="The bank's (or mobile-money operator's) code, from `GET /v1/banks`.")
    account_number: str = Field(min_length=6, max_length=20, pattern=r"^[0-9]+$",
        description="The account (or mobile-money) number, digits only.")
    currency: CurrencyInput = Field(description="The currency paid out to it.")
    account_name: str | None = Field(default=None, max_length=200,
        description="The name on the account, when the gateway cannot resolve it (mobile money).")


class FinalizeIn(StrictModel):
    """The OTP Paystack sent to the business for a transfer it holds."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"otp": "123456"}]})

    otp: str = Field(min_length=4, max_length=12, pattern=r"^[0-9]+$",
                     description="The one-time password Paystack sent to the business; never stored or logged.")


class BankOut(BaseModel):
    code: str = Field(description="The code to register a payout account with.")
    name: str = Field(description="The bank's or operator's name.")
    type: str | None = Field(
        description="The gateway's recipient type for it (`nuban`, `ghipss`, `mobile_money`, `basa`, ...).")
    currency: CurrencyCode = Field(description="The currency it takes.")


class BankList(BaseModel):
    items: list[BankOut] = Field(description="The banks and operators.")


class PayoutAccountOut(FromRow):
    user_id: str = Field(description="Whose account it is.")
    currency: CurrencyCode = Field(description="The currency paid out to it.")
    bank_code: str = Field(description="The bank's code.")
    account_number_last4: str = Field(validation_alias="account_last4",
        description="The last four digits of the account number.")
    account_name: str = Field(description="The name on the account, as the gateway resolved it.")
    recipient_code: str = Field(description="The gateway's transfer recipient for it.")
    updated_at: datetime = Field(description="When it was registered.")


class PayoutOut(FromRow):
    id: str
    user_id: str = Field(description="The payee.")
    amount: Money = Field(description="The amount paid out.")
    currency: CurrencyCode
    status: Annotated[str, one_of(PayoutStatus)] = Field(
        description="`pending`, `processing`, then `paid`, `failed` or `reversed`; `failed` and `reversed` go "
        "back to `pending` on an admin's retry.")
    reference: str = Field(description="The transfer's reference at the gateway.")
    reason: str = Field(description="What it pays (a release, a distribution).")
    source_id: str = Field(description="The id of what it pays.")
    awaiting_payout_account: bool = Field(description="Whether it waits for the payee to register a payout account.")
    attempts: int = Field(description="How many times it was sent.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    paid_at: datetime | None = Field(description="When it was paid.")
    created_at: datetime
    updated_at: datetime
