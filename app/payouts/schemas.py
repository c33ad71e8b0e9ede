"""Request and answer bodies of payout accounts (account numbers shown by their last four digits) and
payouts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from app.core.schemas import CurrencyCode, CurrencyInput, FromRow, Money, StrictModel, one_of
from app.models.statuses import PayoutStatus

RecipientType = Literal["nuban", "ghipss", "mobile_money", "mobile_money_business", "kepss", "basa"]


class PayoutAccountIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"bank_code": "057", "account_number": "0123456789", "currency": "NGN"},
        {"bank_code": "MTN", "account_number": "0551234987", "currency": "GHS", "type": "mobile_money",
         "account_name": "Kwame Mensah"},
        {"bank_code": "632005", "account_number": "0123456789", "currency": "ZAR", "account_name": "Ann Smith",
         "account_type": "personal", "document_type": "identityNumber", "document_number": "1234567890123"},
    ]})

    bank_code: str = Field(min_length=1, max_length=20, pattern=r"^[0-9A-Za-z]+$",
        description="The bank's (or mobile-money operator's) code, from `GET /v1/banks`.")
    # Five digits at least: an M-PESA till number is as short as that.
    account_number: str = Field(min_length=5, max_length=20, pattern=r"^[0-9]+$",
        description="The account, phone or till number, digits only.")
    currency: CurrencyInput = Field(description="The currency paid out to it.")
    account_name: str | None = Field(default=None, min_length=1, max_length=200,
        description="The name on the account; required where the gateway cannot look it up (Kenya, mobile money).")
    type: RecipientType | None = Field(default=None,
        description="Paystack's recipient type; by default the currency's bank account type (KES: mobile money).")
    account_type: Literal["personal", "business"] | None = Field(default=None,
        description="South Africa only: the kind of account, checked with the bank.")
    document_type: Literal["identityNumber", "passportNumber", "businessRegistrationNumber"] | None = Field(
        default=None, description="South Africa only: the document the bank checks the account against.")
    document_number: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[0-9A-Za-z/]+$",
        description="South Africa only: the document's number (stored encrypted, never shown).")


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
    id: str
    user_id: str = Field(description="Whose account it is.")
    currency: CurrencyCode = Field(description="The currency paid out to it.")
    type: RecipientType = Field(description="Paystack's recipient type.")
    bank_code: str = Field(description="The bank's (or operator's) code.")
    last4: str = Field(validation_alias=AliasChoices("last4", "account_last4"),
                       description="The last four digits of the account number.")
    account_number_last4: str = Field(validation_alias=AliasChoices("account_number_last4", "account_last4"),
                                      description="The same four digits, under the API's first name for them.")
    account_name: str = Field(description="The name on the account, as the gateway resolved it or as given.")
    recipient_code: str = Field(description="The gateway's transfer recipient for it.")
    is_default: bool = Field(description="Whether payouts in its currency go to it.")
    account_type: str | None = Field(description="South Africa: `personal` or `business`.")
    document_type: str | None = Field(description="South Africa: the kind of document checked.")
    created_at: datetime
    updated_at: datetime = Field(description="When it was last registered or changed.")


class PayoutAccountList(BaseModel):
    items: list[PayoutAccountOut]


class PayoutOut(FromRow):
    id: str
    user_id: str = Field(description="The payee.")
    amount: Money = Field(description="The amount paid out.")
    currency: CurrencyCode
    status: Annotated[str, one_of([*PayoutStatus, "awaiting_payout_account"])] = Field(
        validation_alias=AliasChoices("shown_status", "status"),
        description="`pending` (`awaiting_payout_account` while the payee has no default account in its "
        "currency), `awaiting_funds`, `processing`, `awaiting_otp`, then `paid`, `failed` or `reversed`; "
        "`failed` and `reversed` go back to `pending` on an admin's retry.")
    reference: str = Field(description="The transfer's reference at the gateway.")
    reason: str = Field(description="What it pays (a release, a distribution).")
    source_id: str = Field(description="The id of what it pays.")
    awaiting_payout_account: bool = Field(description="Whether it waits for the payee to register a payout account.")
    attempts: int = Field(description="How many times it was sent.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    paid_at: datetime | None = Field(description="When it was paid.")
    created_at: datetime
    updated_at: datetime
