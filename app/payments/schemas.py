"""Request and answer bodies of payments and refunds, and the webhook's acknowledgement."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from app.core.money import AmountInput
from app.core.routing import plain_json
from app.core.schemas import FromRow, Money, OptionalMoney, StrictModel

PaymentType = Literal["investment", "share_transfer", "revenue"]
# Every payment's `payment_type`: those POST /v1/payments opens, and a revenue declaration's pool (opened by
# POST /v1/apps/{app_id}/revenue-declarations).
AnyPaymentType = Literal["investment", "share_transfer", "revenue", "revenue_declaration"]
Channel = Literal["card", "bank", "ussd", "qr", "mobile_money", "bank_transfer"]
PaymentStatus = Literal["pending", "success", "failed", "abandoned", "refunded", "partially_refunded"]
MAX_METADATA_BYTES = 4096
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")
_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # ASCII digits: `\d` takes any script's


class PaymentCreate(StrictModel):
    payment_type: PaymentType = Field(description=(
        "`investment`: new shares of the app. `share_transfer`: an offer of shares made to the caller. `revenue`: "
        "an investor pool paid directly by the app's owner (or an admin) for a `period`: the `amount` is what "
        "a distribution of that period shares out over the holders, less the platform fee. To pay the "
        "investors' part of what the app earned, declare the revenue instead "
        "(POST /v1/apps/{app_id}/revenue-declarations), which computes the pool."))
    app_id: str = Field(min_length=1, max_length=64)
    email: str = Field(max_length=320)
    currency: str = Field(min_length=3, max_length=3)
    shares: int | None = Field(default=None, gt=0, le=10**12)
    amount: AmountInput | None = None
    share_transfer_id: str | None = Field(default=None, max_length=40)
    period: str | None = None
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=6)
    callback_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError("not a valid email address")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return value.upper()

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None and not _PERIOD.fullmatch(value):
            raise ValueError("period must be YYYY-MM")
        return value

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value else value

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s]+$", value):
            raise ValueError("callback_url must be an http(s) URL")
        return value

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return plain_json(value)


class PaymentOut(FromRow):
    id: str
    reference: str
    payment_url: str | None = Field(validation_alias="authorization_url")
    access_code: str | None
    status: str
    amount: Money
    currency: str
    payment_type: str
    app_id: str
    user_id: str
    email: str
    shares: int | None
    share_transfer_id: str | None
    period: str | None
    channels: list[str] | None
    callback_url: str | None
    metadata: dict[str, Any] = Field(validation_alias="extra")
    channel: str | None
    paid_at: datetime | None
    refunded_amount: Money
    # Paystack's fee on the charge, and what the customer paid (more than `amount` when the fees are
    # passed on to customers); null until the charge succeeds.
    gateway_fee: OptionalMoney
    charged_amount: OptionalMoney
    flagged: bool
    flag_reason: str | None
    note: str | None = Field(validation_alias="outcome_note")
    created_at: datetime
    updated_at: datetime


class PaymentRefundOut(BaseModel):
    """A refund of a payment through the gateway. `transaction_id` is the escrow deposit it came out of
    (none for a payment refunded before it reached escrow). `status`: pending -> sent -> processed |
    failed; unknown while the gateway's answer is unclear; needs_attention when the gateway needs the
    payer's bank details."""

    id: str
    transaction_id: str | None
    escrow_transaction_id: str | None
    payment_reference: str
    amount: str
    currency: str
    status: str
    created_at: datetime
    updated_at: datetime


class WebhookAck(BaseModel):
    status: Literal["ok"] = "ok"
