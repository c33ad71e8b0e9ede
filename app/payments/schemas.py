"""Request and answer bodies of payments and refunds, and the webhook's acknowledgement."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.money import AmountInput
from app.core.routing import plain_json
from app.core.schemas import (
    Amount,
    CurrencyCode,
    CurrencyInput,
    FromRow,
    Money,
    OptionalMoney,
    Period,
    StrictModel,
    check_callback_url,
    check_email,
    check_period,
    one_of,
    upper_code,
)
from app.models.statuses import RefundStatus

PaymentType = Literal["investment", "share_transfer", "revenue"]
PAYMENT_TYPES = get_args(PaymentType)
# Every payment's `payment_type`: those POST /v1/payments opens, and a revenue declaration's pool (opened by
# POST /v1/apps/{app_id}/revenue-declarations).
AnyPaymentType = Literal["investment", "share_transfer", "revenue", "revenue_declaration"]
Channel = Literal["card", "bank", "ussd", "qr", "mobile_money", "bank_transfer"]
PaymentStatus = Literal["pending", "success", "failed", "abandoned", "refunded", "partially_refunded"]
MAX_METADATA_BYTES = 4096


class PaymentCreate(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "payment_type": "investment", "app_id": "app-1", "email": "investor@example.com", "currency": "NGN",
        "shares": 10, "callback_url": "https://example.com/return",
    }]})

    payment_type: PaymentType = Field(description=(
        "`investment`: new shares of the app. `share_transfer`: an offer of shares made to the caller. `revenue`: "
        "an investor pool paid directly by the app's owner (or an admin) for a `period`: the `amount` is what "
        "a distribution of that period shares out over the holders, less the platform fee. To pay the "
        "investors' part of what the app earned, declare the revenue instead "
        "(POST /v1/apps/{app_id}/revenue-declarations), which computes the pool."))
    app_id: str = Field(min_length=1, max_length=64, description="The app it is for.")
    email: str = Field(max_length=320, description="The payer's email, for Paystack's checkout and receipt.")
    currency: CurrencyInput = Field(description="The currency to pay in: the app's (or the share transfer's).")
    shares: int | None = Field(default=None, gt=0, le=10**12,
        description="`investment`: how many shares to buy; the server computes the amount.")
    amount: AmountInput | None = Field(default=None,
        description="`revenue`: the amount paid in (the other types' amounts are computed by the server).")
    share_transfer_id: str | None = Field(default=None, max_length=40,
        description="`share_transfer`: the offer being paid for.")
    period: Period | None = Field(default=None, description="`revenue`: the month the revenue is for.")
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=6,
        description="The payment channels to offer at checkout (default: all the gateway offers).")
    callback_url: str | None = Field(default=None, max_length=2048,
        description="Where the checkout sends the customer back to (http or https).")
    metadata: dict[str, Any] = Field(default_factory=dict,
        description="Free-form JSON kept with the payment (at most 4096 bytes).")

    _email = field_validator("email")(check_email)
    _currency = field_validator("currency")(upper_code)
    _period = field_validator("period")(check_period)
    _callback_url = field_validator("callback_url")(check_callback_url)

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value else value


    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return plain_json(value)


class PaymentOut(FromRow):
    id: str
    reference: str = Field(description="The payment's reference, at the gateway too.")
    payment_url: str | None = Field(validation_alias="authorization_url",
        description="The checkout page to send the customer to; null once it is of no use.")
    access_code: str | None = Field(description="The gateway's access code for its inline checkout.")
    status: Annotated[str, one_of(get_args(PaymentStatus))] = Field(
        description="`pending` until the gateway settles the charge; `success`, `failed`, `abandoned`; then "
        "`partially_refunded` or `refunded`.")
    amount: Money = Field(description="What the payment is for, in major units of `currency`.")
    currency: CurrencyCode
    payment_type: Annotated[str, one_of(PAYMENT_TYPES)] = Field(description="What the payment buys.")
    app_id: str
    user_id: str = Field(description="The payer's user id.")
    email: str = Field(description="The payer's email.")
    shares: int | None = Field(description="`investment`: the shares bought.")
    share_transfer_id: str | None = Field(description="`share_transfer`: the offer paid for.")
    period: Period | None = Field(description="`revenue`: the month it is for.")
    channels: list[str] | None = Field(description="The channels offered at checkout; null for all.")
    callback_url: str | None = Field(description="Where the checkout sends the customer back to.")
    metadata: dict[str, Any] = Field(validation_alias="extra", description="The metadata given at creation.")
    channel: str | None = Field(description="The channel the customer paid with, once known.")
    paid_at: datetime | None = Field(description="When the charge succeeded.")
    refunded_amount: Money = Field(description="How much of it has been refunded.")
    # Paystack's fee on the charge, and what the customer paid (more than `amount` when the fees are
    # passed on to customers); null until the charge succeeds.
    gateway_fee: OptionalMoney = Field(description="Paystack's fee on the charge; null until it succeeds.")
    charged_amount: OptionalMoney = Field(
        description="What the customer paid (more than `amount` when fees are passed on); null until it succeeds.")
    flagged: bool = Field(description="Whether it needs an admin's attention (see `flag_reason`).")
    flag_reason: str | None = Field(description="Why it is flagged.")
    note: str | None = Field(validation_alias="outcome_note",
        description="What happened to it, when something unusual did.")
    created_at: datetime
    updated_at: datetime


class PaymentRefundOut(BaseModel):
    """A refund of a payment through the gateway. `transaction_id` is the escrow deposit it came out of
    (none for a payment refunded before it reached escrow). `status`: pending -> sent -> processed |
    failed; unknown while the gateway's answer is unclear; needs_attention when the gateway needs the
    payer's bank details."""

    id: str = Field(description="The refund's id (`rfd_...`).")
    transaction_id: str | None = Field(
        description="The escrow deposit it came out of; null for a payment refunded before it reached escrow.")
    escrow_transaction_id: str | None
    payment_reference: str
    amount: Amount = Field(description="The amount refunded, in major units of `currency`.")
    currency: CurrencyCode
    status: Annotated[str, one_of(status for status in RefundStatus if status != RefundStatus.SENDING)] = Field(
        description="`pending` until the gateway has it, then `sent`, `processed` or `failed`; `unknown` while the "
        "gateway's answer is unclear; `needs_attention` when the gateway needs the payer's bank details.")
    created_at: datetime
    updated_at: datetime


class WebhookAck(BaseModel):
    status: Literal["ok"] = Field(default="ok", description="The event is stored (or was already).")
