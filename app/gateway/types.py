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

    @property
    def is_success(self) -> bool:
        return self.status == "success"

    def matches(self, amount: int, currency: str) -> bool:
        """True only for a successful charge of exactly `amount` in `currency`: the condition to credit."""
        return self.is_success and self.amount == amount and self.currency.casefold() == currency.casefold()


@dataclass(frozen=True, slots=True)
class RefundResult:
    id: int
    status: str
    amount: int
    currency: str
    transaction_reference: str | None


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
    status: str
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
    name: str
    code: str
    currency: str


@dataclass(frozen=True, slots=True)
class ResolvedAccount:
    account_number: str
    account_name: str
    bank_id: int | None


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
