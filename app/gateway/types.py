"""Typed results of Paystack calls. Amounts are integers in the currency's subunit (kobo, pesewas, cents)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

TRANSFER_CONCLUSIVE_FAILURES: Final[frozenset[str]] = frozenset(
    {"failed", "reversed", "abandoned", "blocked", "rejected"}
)
TRANSFER_IN_PROGRESS: Final[frozenset[str]] = frozenset(
    {"pending", "otp", "received", "queued", "processing"}
)


@dataclass(frozen=True, slots=True)
class InitializeResult:
    authorization_url: str
    access_code: str
    reference: str


@dataclass(frozen=True, slots=True)
class VerifiedTransaction:
    id: int
    status: str
    reference: str
    amount: int
    currency: str
    paid_at: datetime | None
    channel: str | None
    gateway_response: str | None
    fees: int | None
    metadata: dict[str, Any]
    # A reusable card authorization: kept out of repr so it never lands in logs or tracebacks.
    authorization_code: str | None = field(repr=False)
    customer_email: str | None
    # What the merchant asked for. `amount` is what the customer paid: the same, or more by `fees`
    # when the integration passes its fees on to customers. None when the answer does not say.
    requested_amount: int | None = None

    @property
    def is_success(self) -> bool:
        return self.status == "success"

    @property
    def asked_amount(self) -> int:
        """The amount the charge was initialized with (`requested_amount`, else `amount`)."""
        return self.amount if self.requested_amount is None else self.requested_amount

    def matches(self, amount: int, currency: str) -> bool:
        """True only for a successful charge of exactly `amount` in `currency`, paid in full: the condition
        to credit. The customer paid either that amount or that amount plus the fees passed on to them."""
        return (
            self.is_success
            and self.currency.casefold() == currency.casefold()
            and self.asked_amount == amount
            and self.amount in (amount, amount + (self.fees or 0))
        )


@dataclass(frozen=True, slots=True)
class RefundResult:
    id: int
    status: str
    amount: int
    currency: str
    transaction_reference: str | None
    transaction_id: int | None = None
    # What we sent as merchant_note (Paystack fills in its own default when none was sent).
    merchant_note: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefundPage:
    items: list[RefundResult]
    page: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class TransferRecipient:
    recipient_code: str
    name: str
    bank_code: str | None
    account_last4: str | None


@dataclass(frozen=True, slots=True)
class TransferResult:
    reference: str
    transfer_code: str | None
    # None when the answer did not say (older bulk answers): the outcome is unknown until verified.
    status: str | None
    amount: int
    currency: str

    @property
    def is_success(self) -> bool:
        return self.status == "success"

    @property
    def is_conclusive_failure(self) -> bool:
        """Only these allow a retry (with the same reference); anything else may still pay out."""
        return self.status in TRANSFER_CONCLUSIVE_FAILURES

    @property
    def is_in_progress(self) -> bool:
        return self.status in TRANSFER_IN_PROGRESS


@dataclass(frozen=True, slots=True)
class BulkTransferItem:
    amount: int
    reference: str
    recipient: str
    reason: str


@dataclass(frozen=True, slots=True)
class Bank:
    """A bank or mobile-money operator the gateway pays out to; `type` is the recipient type it takes
    (`nuban`, `ghipss`, `mobile_money`, `basa`, ...), None where the gateway's list does not say."""

    name: str
    code: str
    currency: str
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """What the integration holds in one currency, in its subunit."""

    currency: str
    balance: int


@dataclass(frozen=True, slots=True)
class ResolvedAccount:
    account_number: str
    account_name: str
    bank_id: int | None


@dataclass(frozen=True, slots=True)
class AccountValidation:
    """POST /bank/validate's verdict on a South African account: `verified`, and Paystack's words for it."""

    verified: bool
    message: str | None


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A charge as the gateway's transaction list (or verify) shows it, for reconciliation."""

    id: int
    reference: str
    status: str
    amount: int
    # What the merchant asked for; `amount` also holds the fees when the customer pays them.
    requested_amount: int | None
    currency: str
    paid_at: datetime | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A transfer as the gateway's transfer list shows it, for reconciliation. Older list answers
    carry no `reference`; the transfer code still names the transfer."""

    reference: str | None
    transfer_code: str | None
    status: str
    amount: int
    currency: str
    created_at: datetime | None
