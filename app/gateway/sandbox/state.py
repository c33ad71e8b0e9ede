"""The sandbox's in-memory Paystack, and the rules Paystack applies to requests.

Methods that serve API calls raise PaystackError (rendered as Paystack's error envelope);
methods behind the Python control API raise KeyError or ValueError.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.gateway.sandbox.banks import (
    FAILING_ACCOUNT,
    NUBAN,
    RESOLVING_CURRENCIES,
    find_bank,
    resolve_account_name,
)
from app.gateway.sandbox.envelope import PaystackError, invalid, not_found
from app.gateway.sandbox.faults import SandboxFaults
from app.gateway.sandbox.fields import DIGITS, optional_text, parse_amount, required_text
from app.gateway.sandbox.records import (
    ACCEPTED_RESOLUTIONS,
    CHARGE_OUTCOMES,
    DISPUTE_RESOLUTIONS,
    OPEN_CHARGE_STATUSES,
    ChargeOutcome,
    Customer,
    Dispute,
    DisputeResolution,
    Recipient,
    Refund,
    Transaction,
    Transfer,
    format_major,
    now,
    token,
)

MINIMUM_CHARGE = {"NGN": 5000, "GHS": 10, "ZAR": 100, "KES": 300, "USD": 200}
CHANNELS = ("card", "bank", "ussd", "qr", "mobile_money", "bank_transfer", "eft", "apple_pay")
DEFAULT_CHANNELS = ("card", "bank", "ussd", "qr", "bank_transfer")
# Recipient type -> the currencies it can hold; the first is the default.
RECIPIENT_CURRENCIES = {
    "nuban": ("NGN",),
    "ghipss": ("GHS",),
    "mobile_money": ("GHS", "KES"),
    "mobile_money_business": ("KES",),
    "kepss": ("KES",),
    "basa": ("ZAR",),
}
BULK_TRANSFER_LIMIT = 100
# The OTP that finalizes a sandbox transfer while transfer OTP is on (Paystack texts a real one to the business).
TEST_TRANSFER_OTP = "123456"
# What the sandbox integration holds per currency until told otherwise: enough for any test.
DEFAULT_BALANCE = 10**13

TRANSACTION_REFERENCE = re.compile(r"[A-Za-z0-9.=-]+")
TRANSFER_REFERENCE = re.compile(r"[a-z0-9_-]{16,50}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


RETRYABLE_TRANSFER_STATUSES = frozenset({"failed", "reversed", "abandoned", "blocked", "rejected"})


def charge_fees(amount: int, currency: str) -> int:
    """Paystack's local pricing: NGN 1.5% plus NGN 100 from NGN 2,500, capped at NGN 2,000."""
    if currency == "NGN":
        fee = (amount * 150 + 5000) // 10000 + (10000 if amount >= 250000 else 0)
        return min(fee, 200000)
    basis_points = {"GHS": 195, "ZAR": 290, "KES": 290, "USD": 390}[currency]
    return (amount * basis_points + 5000) // 10000


@dataclass(frozen=True)
class _TransferRequest:
    """A validated transfer that has not been made yet (bulk checks every item before making any)."""

    amount: int
    recipient: Recipient
    reference: str
    reason: str | None
    currency: str


class SandboxState:
    def __init__(self, faults: SandboxFaults) -> None:
        self._faults = faults
        # Paystack's integration setting "charge transaction fees to customers"; charges take it when made.
        self.customer_pays_fees = False
        # Paystack's integration setting "confirm transfers with an OTP": transfers wait in `otp` for
        # POST /transfer/finalize_transfer, and bulk transfers are refused.
        self.transfer_otp = False
        # What GET /balance shows and transfers draw on, per currency, in subunits.
        self.balances: dict[str, int] = dict.fromkeys(MINIMUM_CHARGE, DEFAULT_BALANCE)
        # How many times each transfer's OTP was sent again (POST /transfer/resend_otp).
        self.otp_resends: dict[str, int] = {}
        self.transactions: dict[str, Transaction] = {}
        self.refunds: dict[int, Refund] = {}
        self.recipients: dict[str, Recipient] = {}
        self.transfers: dict[str, Transfer] = {}
        # Every transfer made, in order: a reference retried after a conclusive failure is made again,
        # and `transfers` then holds only its latest transfer; Paystack keeps each one.
        self.transfer_history: list[Transfer] = []
        self.disputes: dict[str, Dispute] = {}
        self._transactions_by_id: dict[int, Transaction] = {}
        self._transactions_by_access_code: dict[str, Transaction] = {}
        self._recipients_by_account: dict[tuple[str, str, str, str], Recipient] = {}
        self._customers: dict[str, Customer] = {}
        # Large, increasing ids like Paystack's; transaction ids need the unsigned 64-bit range.
        self._transaction_ids = itertools.count(4_000_000_001)
        self._refund_ids = itertools.count(3_000_001)
        self._recipient_ids = itertools.count(20_000_001)
        self._transfer_ids = itertools.count(50_000_001)
        self._customer_ids = itertools.count(180_000_001)
        self._dispute_ids = itertools.count(1_000_001)

    # Charges

    def initialize(self, body: Mapping[str, Any]) -> Transaction:
        email = body.get("email")
        if not isinstance(email, str) or not EMAIL.fullmatch(email):
            raise invalid("Invalid Email Address Passed")
        currency = optional_text(body, "currency") or "NGN"
        if currency not in MINIMUM_CHARGE:
            raise invalid("Currency not supported by merchant", code="unsupported_currency")
        amount = parse_amount(body.get("amount"), message="Invalid Amount Sent")
        minimum = MINIMUM_CHARGE[currency]
        if amount < minimum:
            raise invalid(
                "Invalid Amount Sent",
                next_step=f"The minimum amount is {currency} {format_major(minimum)} ({minimum} subunits)",
            )
        reference = self._new_transaction_reference(body.get("reference"))
        callback_url = optional_text(body, "callback_url")
        if callback_url is not None and not callback_url.startswith(("http://", "https://")):
            raise invalid("Invalid callback_url", next_step="Send an absolute http(s) URL")
        tx = Transaction(
            id=next(self._transaction_ids),
            reference=reference,
            access_code=token(15),
            amount=amount,
            currency=currency,
            customer=self._customer(email),
            channels=_channels(body.get("channels")),
            callback_url=callback_url,
            metadata=_metadata(body.get("metadata")),
            created_at=now(),
            fees_on_customer=self.customer_pays_fees,
        )
        self.transactions[reference] = tx
        self._transactions_by_id[tx.id] = tx
        self._transactions_by_access_code[tx.access_code] = tx
        return tx

    def verify(self, reference: str) -> Transaction:
        tx = self.transactions.get(reference)
        if tx is None:
            raise PaystackError(
                404,
                "Transaction reference not found",
                code="transaction_not_found",
                next_step="Ensure that you're passing the reference of a transaction on this integration",
            )
        return tx

    def transaction_by_access_code(self, access_code: str) -> Transaction | None:
        return self._transactions_by_access_code.get(access_code)

    def settle_charge(self, reference: str, outcome: ChargeOutcome) -> Transaction:
        """What the customer does on the checkout page. KeyError: unknown; ValueError: not allowed."""
        tx = self.transactions[reference]
        if outcome not in CHARGE_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(CHARGE_OUTCOMES)}")
        if tx.status not in OPEN_CHARGE_STATUSES:
            raise ValueError(f"transaction {reference} is already settled ({tx.status})")
        tx.status = outcome
        if outcome == "success":
            tx.paid_at = now()
            tx.channel = tx.channels[0]
            tx.gateway_response = "Successful"
            tx.fees = charge_fees(tx.amount, tx.currency)
            tx.authorization = _authorization(tx.channel)
        elif outcome == "failed":
            tx.channel = tx.channels[0]
            tx.gateway_response = "Declined"
        else:
            tx.gateway_response = "The transaction was not completed"
        return tx

    # Refunds

    def create_refund(self, body: Mapping[str, Any]) -> Refund:
        tx = self._refundable_transaction(body.get("transaction"))
        remaining = tx.amount - tx.refunded
        if remaining == 0:
            raise invalid("Transaction has been fully reversed", code="transaction_reversed")
        amount = remaining if body.get("amount") is None else parse_amount(body.get("amount"))
        if amount > remaining:
            raise invalid(
                "Refund amount cannot be greater than the amount left to refund",
                next_step=f"At most {remaining} subunits of this transaction can still be refunded",
            )
        currency = optional_text(body, "currency")
        if currency is not None and currency != tx.currency:
            raise invalid("Currency does not match the transaction's currency")
        default_note = f"Refund for transaction {tx.reference}"
        moment = now()
        refund = Refund(
            id=next(self._refund_ids),
            transaction=tx,
            amount=amount,
            customer_note=optional_text(body, "customer_note") or default_note,
            merchant_note=optional_text(body, "merchant_note") or default_note,
            outcome=self._faults.take_refund_outcome(),
            created_at=moment,
            updated_at=moment,
        )
        tx.refunded += amount
        self.refunds[refund.id] = refund
        return refund

    def refund(self, refund_id: str) -> Refund:
        refund = self.refunds.get(int(refund_id)) if DIGITS.fullmatch(refund_id) else None
        if refund is None:
            raise not_found("Refund not found")
        return refund

    def list_refunds(
        self, *, transaction: str | None, since: datetime | None, until: datetime | None
    ) -> list[Refund]:
        """Newest first. `transaction`: the charge's id or reference (a charge nobody has: no refunds)."""
        found = list(self.refunds.values())
        if transaction is not None:
            tx = self.transactions.get(transaction)
            if tx is None and DIGITS.fullmatch(transaction):
                tx = self._transactions_by_id.get(int(transaction))
            found = [refund for refund in found if refund.transaction is tx]
        if since is not None:
            found = [refund for refund in found if refund.created_at >= since]
        if until is not None:
            found = [refund for refund in found if refund.created_at <= until]
        return sorted(found, key=lambda refund: refund.id, reverse=True)

    def settle_refund(self, refund_id: int) -> Refund:
        refund = self.refunds[refund_id]
        refund.status = refund.outcome
        refund.updated_at = now()
        if refund.outcome == "failed":
            refund.transaction.refunded -= refund.amount
            refund.refund_reference = f"TRF_{token(15)}"
        elif refund.outcome == "needs-attention":
            refund.refund_reference = f"TRF_{token(15)}"
        else:
            refund.refund_reference = "".join(secrets.choice(string.digits) for _ in range(12))
            refund.refunded_at = refund.updated_at
        return refund

    # Payouts

    def create_recipient(self, body: Mapping[str, Any]) -> tuple[Recipient, bool]:
        """The recipient, and whether it is new: the same account again gives the existing one."""
        recipient_type = required_text(body, "type")
        if recipient_type not in RECIPIENT_CURRENCIES:
            raise invalid("Invalid recipient type", next_step="Use one of " + ", ".join(RECIPIENT_CURRENCIES))
        name = required_text(body, "name")
        account_number = required_text(body, "account_number")
        bank_code = required_text(body, "bank_code")
        currencies = RECIPIENT_CURRENCIES[recipient_type]
        currency = optional_text(body, "currency") or currencies[0]
        if currency not in currencies:
            raise invalid(f"Currency {currency} is not available for {recipient_type} recipients")
        bank = find_bank(bank_code, currency=currency, bank_type=recipient_type)
        if bank is None:
            raise invalid("Invalid bank code", code="invalid_bank_code", next_step="See GET /bank for codes")
        account_name: str | None
        if currency in RESOLVING_CURRENCIES:
            # Nigeria and Ghana: the number must resolve, banks and mobile-money operators alike.
            account_name = resolve_account_name(account_number, bank_code)
            if account_name is None:
                raise invalid("Cannot resolve account", code="invalid_account")
        elif recipient_type == "basa" and not NUBAN.fullmatch(account_number):
            raise invalid("Invalid account number", code="invalid_account")
        elif DIGITS.fullmatch(account_number) and account_number != FAILING_ACCOUNT:
            account_name = name
        else:
            raise invalid("Invalid account number", code="invalid_account")
        if recipient_type.startswith("mobile_money"):
            account_name = None  # Paystack's mobile-money recipients carry no account name
        key = (recipient_type, currency, bank_code, account_number)
        existing = self._recipients_by_account.get(key)
        if existing is not None:
            return existing, False
        recipient = Recipient(
            id=next(self._recipient_ids),
            code=f"RCP_{token(15)}",
            type=recipient_type,
            name=name,
            currency=currency,
            bank=bank,
            account_number=account_number,
            account_name=account_name,
            created_at=now(),
        )
        self.recipients[recipient.code] = recipient
        self._recipients_by_account[key] = recipient
        return recipient, True

    def create_transfer(self, body: Mapping[str, Any]) -> Transfer:
        """A transfer queued (`pending`), or waiting for its OTP (`otp`) while transfer OTP is on."""
        _require_balance_source(body)
        request = self._transfer_request(body, currency=optional_text(body, "currency"))
        self._check_balance(request.currency, request.amount)
        if self.transfer_otp:
            return self._make_transfer(request, status="otp")
        self.balances[request.currency] -= request.amount
        return self._make_transfer(request, status="pending")

    def finalize_transfer(self, body: Mapping[str, Any]) -> Transfer:
        """POST /transfer/finalize_transfer: the OTP releases a transfer waiting in `otp`; a wrong one changes
        nothing."""
        transfer = self._transfer_by_code(body)
        otp = body.get("otp")
        if not isinstance(otp, str) or not otp:
            raise invalid("otp is required")
        if transfer.status != "otp":
            raise invalid("Transfer is not currently awaiting OTP", code="transfer_not_awaiting_otp")
        if otp != TEST_TRANSFER_OTP:
            raise invalid("Invalid OTP", code="invalid_otp", next_step="Send the OTP sent to the business phone")
        self._check_balance(transfer.currency, transfer.amount)
        self.balances[transfer.currency] -= transfer.amount
        transfer.status = "pending"
        transfer.updated_at = now()
        return transfer

    def resend_transfer_otp(self, body: Mapping[str, Any]) -> Transfer:
        """POST /transfer/resend_otp (`reason`: `resend_otp` or `transfer`)."""
        transfer = self._transfer_by_code(body)
        if body.get("reason") not in ("resend_otp", "transfer"):
            raise invalid("reason must be resend_otp or transfer")
        if transfer.status != "otp":
            raise invalid("Transfer is not currently awaiting OTP", code="transfer_not_awaiting_otp")
        self.otp_resends[transfer.code] = self.otp_resends.get(transfer.code, 0) + 1
        return transfer

    def set_balance(self, currency: str, amount: int) -> None:
        """What the integration holds in `currency` (Python control API: ValueError)."""
        if currency not in MINIMUM_CHARGE:
            raise ValueError(f"currency must be one of {', '.join(MINIMUM_CHARGE)}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError("the balance is a whole number of subunits, not negative")
        self.balances[currency] = amount

    def create_bulk_transfer(self, body: Mapping[str, Any]) -> list[Transfer]:
        """All or nothing: every item is checked before any transfer is made. Paystack takes bulk transfers
        only with transfer OTP off."""
        _require_balance_source(body)
        if self.transfer_otp:
            raise invalid("Bulk transfers are not available while transfer OTP is enabled",
                          code="transfer_otp_enabled", next_step="Disable OTP for transfers to use bulk transfers")
        currency = optional_text(body, "currency") or "NGN"
        items = body.get("transfers")
        if not isinstance(items, list) or not 1 <= len(items) <= BULK_TRANSFER_LIMIT:
            raise invalid(f"transfers must be a list of 1 to {BULK_TRANSFER_LIMIT} transfers")
        requests: list[_TransferRequest] = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise invalid("each transfer must be an object")
                request = self._transfer_request(item, currency=currency)
                if any(other.reference == request.reference for other in requests):
                    raise invalid("Transfer reference already exists", code="duplicate_reference")
            except PaystackError as exc:
                raise invalid(f"transfers[{index}]: {exc.message}", code=exc.code) from exc
            requests.append(request)
        self._check_balance(currency, sum(request.amount for request in requests))
        self.balances[currency] -= sum(request.amount for request in requests)
        # Bulk transfers start as `received` on Paystack, single ones as `pending`.
        return [self._make_transfer(request, status="received") for request in requests]

    def transfer(self, reference: str) -> Transfer:
        transfer = self.transfers.get(reference)
        if transfer is None:
            raise not_found("Transfer not found")
        return transfer

    def settle_transfer(self, reference: str) -> Transfer:
        transfer = self.transfers[reference]
        transfer.status = "success" if transfer.outcome == "reversed_after_success" else transfer.outcome
        transfer.updated_at = now()
        if transfer.status != "failed":
            transfer.transferred_at = transfer.updated_at
        if transfer.status in RETRYABLE_TRANSFER_STATUSES:
            self.balances[transfer.currency] += transfer.amount  # the money comes back to the balance
        return transfer

    def reverse_transfer(self, reference: str) -> Transfer:
        """The receiving bank sends a paid transfer back; it keeps its `transferred_at`.
        KeyError: unknown reference; ValueError: not a successful transfer."""
        transfer = self.transfers[reference]
        if transfer.status != "success":
            raise ValueError(f"only a successful transfer can be reversed; {reference} is {transfer.status}")
        transfer.status = "reversed"
        transfer.updated_at = now()
        self.balances[transfer.currency] += transfer.amount
        return transfer

    # Disputes (Python control API: KeyError and ValueError)

    def open_dispute(self, reference: str, amount: int | None) -> Dispute:
        tx = self.transactions[reference]
        if tx.status != "success":
            raise ValueError(f"only a successful charge can be disputed; {reference} is {tx.status}")
        current = self.disputes.get(reference)
        if current is not None and current.status != "resolved":
            raise ValueError(f"transaction {reference} already has an open dispute")
        amount = tx.amount if amount is None else amount
        if not 0 < amount <= tx.amount:
            raise ValueError(f"dispute amount must be between 1 and {tx.amount}")
        moment = now()
        dispute = Dispute(
            id=next(self._dispute_ids), transaction=tx, amount=amount, created_at=moment, updated_at=moment
        )
        self.disputes[reference] = dispute
        return dispute

    def resolve_dispute(self, reference: str, resolution: DisputeResolution) -> Dispute:
        if reference not in self.transactions:
            raise KeyError(reference)
        if resolution not in DISPUTE_RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(DISPUTE_RESOLUTIONS)}")
        dispute = self.disputes.get(reference)
        if dispute is None or dispute.status == "resolved":
            raise ValueError(f"transaction {reference} has no open dispute")
        dispute.status = "resolved"
        dispute.resolution = resolution
        dispute.resolved_at = dispute.updated_at = now()
        if resolution in ACCEPTED_RESOLUTIONS:
            dispute.transaction.status = "reversed"
        return dispute

    # Helpers

    def _new_transaction_reference(self, value: object) -> str:
        if value is None or value == "":
            return token(12)
        if not isinstance(value, str) or not TRANSACTION_REFERENCE.fullmatch(value):
            raise invalid(
                "Invalid transaction reference",
                next_step="Use only letters, digits, '-', '.' and '=' in a reference",
            )
        if value in self.transactions:
            raise invalid(
                "Duplicate Transaction Reference",
                code="duplicate_reference",
                next_step="Ensure you're passing a unique reference for each transaction",
            )
        return value

    def _customer(self, email: str) -> Customer:
        key = email.lower()
        customer = self._customers.get(key)
        if customer is None:
            customer = Customer(id=next(self._customer_ids), email=key, code=f"CUS_{token(15)}")
            self._customers[key] = customer
        return customer

    def _refundable_transaction(self, key: object) -> Transaction:
        """By reference, else by id (a reference may itself be all digits)."""
        if key is None or key == "":
            raise invalid("transaction is required")
        tx: Transaction | None = None
        if isinstance(key, str):
            tx = self.transactions.get(key)
            if tx is None and DIGITS.fullmatch(key):
                tx = self._transactions_by_id.get(int(key))
        elif isinstance(key, int) and not isinstance(key, bool):
            tx = self._transactions_by_id.get(key)
        if tx is None:
            raise not_found("Transaction not found")
        if tx.status != "success":
            raise invalid(f"Only successful transactions can be refunded; this one is {tx.status}")
        return tx

    def _transfer_request(self, body: Mapping[str, Any], *, currency: str | None) -> _TransferRequest:
        amount = parse_amount(body.get("amount"))
        code = body.get("recipient")
        recipient = self.recipients.get(code) if isinstance(code, str) else None
        if recipient is None:
            raise invalid(
                "Recipient specified does not exist",
                code="invalid_recipient",
                next_step="Create the recipient with POST /transferrecipient first",
            )
        reference = body.get("reference")
        if reference is None or reference == "":
            reference = token(24)
        elif not isinstance(reference, str) or not TRANSFER_REFERENCE.fullmatch(reference):
            raise invalid(
                "Invalid transfer reference",
                next_step="Use 16 to 50 characters: lowercase letters, digits, '-' and '_'",
            )
        elif reference in self.transfers and self.transfers[reference].status not in RETRYABLE_TRANSFER_STATUSES:
            # Paystack lets a transfer be retried under its reference only after a conclusive failure.
            raise invalid(
                "Transfer reference already exists",
                code="duplicate_reference",
                next_step="Verify the existing transfer with GET /transfer/verify/{reference}",
            )
        currency = currency or recipient.currency
        if currency != recipient.currency:
            raise invalid(f"Currency {currency} does not match the recipient's currency {recipient.currency}")
        return _TransferRequest(amount, recipient, reference, optional_text(body, "reason"), currency)

    def _check_balance(self, currency: str, amount: int) -> None:
        if self.balances.get(currency, 0) < amount:
            raise invalid("Your balance is not enough to fulfil this request", code="insufficient_balance",
                          next_step="Fund your balance, then try again")

    def _transfer_by_code(self, body: Mapping[str, Any]) -> Transfer:
        code = required_text(body, "transfer_code")
        for transfer in self.transfers.values():
            if transfer.code == code:
                return transfer
        raise not_found("Transfer not found")

    def _make_transfer(self, request: _TransferRequest, *, status: str) -> Transfer:
        moment = now()
        transfer = Transfer(
            id=next(self._transfer_ids),
            reference=request.reference,
            code=f"TRF_{token(15)}",
            amount=request.amount,
            currency=request.currency,
            reason=request.reason,
            recipient=request.recipient,
            outcome=self._faults.take_transfer_outcome(),
            status=status,
            created_at=moment,
            updated_at=moment,
        )
        self.transfers[transfer.reference] = transfer
        self.transfer_history.append(transfer)
        return transfer


def _require_balance_source(body: Mapping[str, Any]) -> None:
    if body.get("source") != "balance":
        raise invalid("Invalid source", next_step='Transfers can only be made from "balance"')


def _channels(value: object) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_CHANNELS
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(channel, str) and channel in CHANNELS for channel in value)
    ):
        raise invalid("Invalid channels", next_step="Use a list drawn from: " + ", ".join(CHANNELS))
    return tuple(dict.fromkeys(value))


def _metadata(value: object) -> dict[str, Any] | str:
    # Paystack documents metadata as stringified JSON but takes an object too.
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise invalid("Invalid metadata", next_step="Send metadata as a JSON object")
    return value


def _authorization(channel: str) -> dict[str, Any]:
    """Paystack's test card (4084 0840 8408 4081); only card authorizations can be charged again."""
    return {
        "authorization_code": f"AUTH_{token(10)}",
        "bin": "408408",
        "last4": "4081",
        "exp_month": "12",
        "exp_year": "2030",
        "channel": channel,
        "card_type": "visa",
        "bank": "TEST BANK",
        "country_code": "NG",
        "brand": "visa",
        "reusable": channel == "card",
        "signature": f"SIG_{token(20)}",
        "account_name": None,
    }
