"""The sandbox's Paystack objects, and the JSON shapes Paystack gives them."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from app.gateway.sandbox.banks import Bank
from app.gateway.sandbox.faults import RefundOutcome, TransferOutcome

ChargeOutcome = Literal["success", "failed", "abandoned"]
# A declined or abandoned attempt leaves the customer free to try again on the same checkout page
# (another card, another channel); only a successful charge ends it.
OPEN_CHARGE_STATUSES = frozenset({"ongoing", "failed", "abandoned"})
# Merchant-accepted and declined are what a merchant answers; a chargeback left unanswered in time is
# auto-accepted. Accepting (either way) reverses the charge.
DisputeResolution = Literal["merchant-accepted", "auto-accepted", "declined"]
ACCEPTED_RESOLUTIONS: tuple[DisputeResolution, ...] = ("merchant-accepted", "auto-accepted")
CHARGE_OUTCOMES: tuple[ChargeOutcome, ...] = get_args(ChargeOutcome)
DISPUTE_RESOLUTIONS: tuple[DisputeResolution, ...] = get_args(DisputeResolution)

INTEGRATION_ID = 100043
DOMAIN = "test"
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


def parse_charge_outcome(value: object) -> ChargeOutcome | None:
    return next((outcome for outcome in CHARGE_OUTCOMES if outcome == value), None)


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Paystack's timestamp format: UTC, milliseconds, `Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


def token(length: int) -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def format_major(amount: int) -> str:
    """Subunits as major units ("5,000.00"); every supported currency has two decimals."""
    major, minor = divmod(amount, 100)
    return f"{major:,}.{minor:02d}"


@dataclass(eq=False)
class Customer:
    id: int
    email: str
    code: str

    def api_data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "first_name": None,
            "last_name": None,
            "email": self.email,
            "customer_code": self.code,
            "phone": None,
            "metadata": None,
            "risk_action": "default",
            "international_format_phone": None,
        }


@dataclass(eq=False)
class Transaction:
    id: int
    reference: str
    access_code: str
    amount: int
    currency: str
    customer: Customer
    channels: tuple[str, ...]
    callback_url: str | None
    # Paystack answers "" when no metadata was given.
    metadata: dict[str, Any] | str
    created_at: datetime
    status: str = "ongoing"
    paid_at: datetime | None = None
    channel: str | None = None
    gateway_response: str | None = None
    fees: int | None = None
    # The integration passes its fees on to customers: they pay `amount` plus the fees.
    fees_on_customer: bool = False
    authorization: dict[str, Any] = field(default_factory=dict)
    # Refunded or being refunded; a failed refund gives its amount back.
    refunded: int = 0

    @property
    def charged_amount(self) -> int:
        """What the customer pays: the amount asked for, plus the fees when they are passed on."""
        return self.amount + (self.fees or 0) if self.fees_on_customer else self.amount

    def verify_data(self) -> dict[str, Any]:
        """Verify's answer and charge.success's data, with the keys of Paystack's documented bodies:
        `amount` is what the customer paid, `requested_amount` what the merchant asked for."""
        created = iso(self.created_at)
        paid = iso_or_none(self.paid_at)
        return {
            "id": self.id,
            "domain": DOMAIN,
            "status": self.status,
            "reference": self.reference,
            "receipt_number": None,
            "amount": self.charged_amount,
            "message": None,
            "gateway_response": self.gateway_response,
            "paid_at": paid,
            "created_at": created,
            "channel": self.channel,
            "currency": self.currency,
            "ip_address": None,
            "metadata": self.metadata,
            "log": None,
            "fees": self.fees,
            "fees_split": None,
            "authorization": dict(self.authorization),
            "customer": self.customer.api_data(),
            "plan": None,
            "split": {},
            "order_id": None,
            "paidAt": paid,
            "createdAt": created,
            "requested_amount": self.amount,
            "pos_transaction_data": None,
            "source": None,
            "fees_breakdown": None,
            "connect": None,
            "transaction_date": created,
            "plan_object": {},
            "subaccount": {},
        }


@dataclass(eq=False)
class Refund:
    id: int
    transaction: Transaction
    amount: int
    customer_note: str
    merchant_note: str
    # Chosen when the refund is made (faults apply in order), applied when it settles.
    outcome: RefundOutcome
    created_at: datetime
    updated_at: datetime
    status: str = "pending"
    refund_reference: str | None = None
    refunded_at: datetime | None = None

    def create_data(self) -> dict[str, Any]:
        """POST /refund's answer: the transaction is an object."""
        tx = self.transaction
        return {
            "transaction": {
                "id": tx.id,
                "domain": DOMAIN,
                "reference": tx.reference,
                "amount": tx.amount,
                "paid_at": iso_or_none(tx.paid_at),
                "channel": tx.channel,
                "currency": tx.currency,
            },
            "integration": INTEGRATION_ID,
            "deducted_amount": 0,
            "channel": None,
            "merchant_note": self.merchant_note,
            "customer_note": self.customer_note,
            "status": self.status,
            "refunded_by": "sandbox@paystack.test",
            "expected_at": iso(self.created_at + timedelta(days=7)),
            "currency": tx.currency,
            "domain": DOMAIN,
            "amount": self.amount,
            "fully_deducted": False,
            "id": self.id,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }

    def api_data(self) -> dict[str, Any]:
        """GET /refund/{id}'s answer: the transaction is its id; timestamps in camelCase."""
        return {
            "integration": INTEGRATION_ID,
            "transaction": self.transaction.id,
            "dispute": None,
            "settlement": None,
            "domain": DOMAIN,
            "amount": self.amount,
            "deducted_amount": self._deducted(),
            "fully_deducted": self.status == "processed",
            "currency": self.transaction.currency,
            "channel": self.transaction.channel,
            "status": self.status,
            "refunded_by": "sandbox@paystack.test",
            "refunded_at": iso_or_none(self.refunded_at),
            "expected_at": iso(self.created_at + timedelta(days=7)),
            "customer_note": self.customer_note,
            "merchant_note": self.merchant_note,
            "id": self.id,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }

    def list_data(self) -> dict[str, Any]:
        """One item of GET /refund: the transaction is its id; timestamps in snake_case."""
        return {
            "id": self.id,
            "integration": INTEGRATION_ID,
            "domain": DOMAIN,
            "transaction": self.transaction.id,
            "dispute": None,
            "amount": self.amount,
            "deducted_amount": self._deducted(),
            "currency": self.transaction.currency,
            "channel": self.transaction.channel,
            "fully_deducted": 1 if self.status == "processed" else None,
            "refunded_by": "sandbox@paystack.test",
            "refunded_at": iso_or_none(self.refunded_at),
            "expected_at": iso(self.created_at + timedelta(days=7)),
            "settlement": None,
            "customer_note": self.customer_note,
            "merchant_note": self.merchant_note,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "status": self.status,
        }

    def webhook_data(self) -> dict[str, Any]:
        """The refund.* webhooks' data as Paystack sends them: no refund id (needs-attention aside, as a
        string, and without a processor), and the amount a string in refund.processed and refund.pending."""
        tx = self.transaction
        data: dict[str, Any] = {
            "status": self.status,
            "transaction_reference": tx.reference,
            "refund_reference": self.refund_reference,
            "amount": str(self.amount) if self.status in ("processed", "pending") else self.amount,
            "currency": tx.currency,
            "processor": "mpgs_zen",
            "customer": {"first_name": None, "last_name": None, "email": tx.customer.email},
            "integration": INTEGRATION_ID,
            "domain": DOMAIN,
        }
        if self.status == "needs-attention":
            del data["processor"]
            data |= {"id": str(self.id), "customer_note": self.customer_note, "merchant_note": self.merchant_note}
        return data

    def _deducted(self) -> int:
        return self.amount if self.status == "processed" else 0


@dataclass(eq=False)
class Recipient:
    id: int
    code: str
    type: str
    name: str
    currency: str
    bank: Bank
    account_number: str
    account_name: str | None
    created_at: datetime

    def api_data(self) -> dict[str, Any]:
        created = iso(self.created_at)
        return {
            "id": self.id,
            "recipient_code": self.code,
            "type": self.type,
            "name": self.name,
            "description": None,
            "email": None,
            "metadata": None,
            "currency": self.currency,
            "active": True,
            "is_deleted": False,
            "isDeleted": False,
            "domain": DOMAIN,
            "integration": INTEGRATION_ID,
            "details": {
                "authorization_code": None,
                "account_number": self.account_number,
                "account_name": self.account_name,
                "bank_code": self.bank.code,
                "bank_name": self.bank.name,
            },
            "createdAt": created,
            "updatedAt": created,
        }


@dataclass(eq=False)
class Transfer:
    id: int
    reference: str
    code: str
    amount: int
    currency: str
    reason: str | None
    recipient: Recipient
    # Chosen when the transfer is made (faults apply in order), applied when it settles.
    outcome: TransferOutcome
    status: str
    created_at: datetime
    updated_at: datetime
    transferred_at: datetime | None = None

    def initiate_data(self) -> dict[str, Any]:
        """POST /transfer's answer, which names the recipient by its integer id."""
        return {
            "id": self.id,
            "integration": INTEGRATION_ID,
            "domain": DOMAIN,
            "amount": self.amount,
            "currency": self.currency,
            "source": "balance",
            "reason": self.reason,
            "recipient": self.recipient.id,
            "status": self.status,
            "transfer_code": self.code,
            "reference": self.reference,
            "source_details": None,
            "failures": None,
            "titan_code": None,
            "transferred_at": iso_or_none(self.transferred_at),
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }

    def bulk_item(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "recipient": self.recipient.code,
            "amount": self.amount,
            "transfer_code": self.code,
            "currency": self.currency,
            "status": self.status,
        }

    def api_data(self) -> dict[str, Any]:
        """Verify's answer."""
        return {
            "id": self.id,
            "integration": INTEGRATION_ID,
            "domain": DOMAIN,
            "amount": self.amount,
            "currency": self.currency,
            "source": "balance",
            "source_details": None,
            "reason": self.reason,
            "reference": self.reference,
            "status": self.status,
            "failures": None,
            "transfer_code": self.code,
            "titan_code": None,
            "transferred_at": iso_or_none(self.transferred_at),
            "recipient": self.recipient.api_data(),
            "session": {"provider": None, "id": None},
            "gateway_response": None,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }

    def webhook_data(self) -> dict[str, Any]:
        """The transfer webhooks' data: verify's, with the integration as an object."""
        return {**self.api_data(), "integration": {"id": INTEGRATION_ID, "is_live": False, "business_name": "Sandbox"}}


@dataclass(eq=False)
class Dispute:
    id: int
    transaction: Transaction
    amount: int
    created_at: datetime
    updated_at: datetime
    status: str = "awaiting-merchant-feedback"
    resolution: DisputeResolution | None = None
    resolved_at: datetime | None = None

    def webhook_data(self) -> dict[str, Any]:
        """charge.dispute.create/resolve's data as Paystack documents it: `transaction_reference` null, the
        reference in `transaction`, whose status is `reversed` once the chargeback is accepted."""
        tx = self.transaction
        created = iso(self.created_at)
        return {
            "id": self.id,
            "refund_amount": self.amount,
            "currency": tx.currency,
            "status": self.status,
            "resolution": self.resolution,
            "domain": DOMAIN,
            "transaction": tx.verify_data(),
            "transaction_reference": None,
            "category": "chargeback",
            "customer": tx.customer.api_data(),
            "bin": tx.authorization.get("bin"),
            "last4": tx.authorization.get("last4"),
            "dueAt": iso(self.created_at + timedelta(days=3)),
            "resolvedAt": iso_or_none(self.resolved_at),
            "evidence": None,
            "attachments": None,
            "note": None,
            "history": [{"status": "pending", "by": tx.customer.email, "createdAt": created}],
            "messages": [{"sender": tx.customer.email, "body": "Customer disputes this charge", "createdAt": created}],
            "created_at": created,
            "updated_at": iso(self.updated_at),
        }
