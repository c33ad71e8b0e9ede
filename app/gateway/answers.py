"""Strict models of what Paystack answers in `data`, one per answer shape, and their typed results.

Strict: an amount is an integer (never "500000" nor true), a required text is a non-empty string, a
nested object is an object. Tolerant: fields the service does not read are ignored, and so are the
older shapes Paystack still sends (camelCase timestamps, a refund's charge as an id or as an object,
transfer answers without our reference, bulk items without reference or status, `null`, `{}` or `[]`
for an absent nested object, metadata as "" or 0 or a JSON string). `parse` turns any mismatch into
`GatewayProtocolError`, the error of every answer off the contract: it is raised after the call has
returned, so it is never retried.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from app.gateway.errors import GatewayProtocolError
from app.gateway.types import (
    AccountValidation,
    Balance,
    Bank,
    BulkTransferItem,
    InitializeResult,
    RefundResult,
    ResolvedAccount,
    TransactionRecord,
    TransferRecipient,
    TransferRecord,
    TransferResult,
    VerifiedTransaction,
)

Model = TypeVar("Model", bound=BaseModel)
Item = TypeVar("Item", bound=BaseModel)


def parse(model: type[Model], value: object) -> Model:
    """`value` as `model`, or GatewayProtocolError naming where it is off the contract (never the values:
    answers hold account numbers and authorization codes)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'data'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)[:5]
        )
        raise GatewayProtocolError(f"Paystack answer off the contract ({model.__name__}): {problems}") from exc


def _absent_if_empty(value: object) -> object:
    """Paystack sends null, {}, [] (or "") for a nested object it has nothing for."""
    return value or None


def _timestamp(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("a timestamp is a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("unreadable timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _metadata(value: object) -> dict[str, Any]:
    """The charge's metadata object. Paystack answers "" or 0 (its documented charge.success body) when
    there is none: nothing the service relies on is in metadata, so anything but an object reads as empty
    rather than failing the charge."""
    if isinstance(value, str):
        # Metadata sent as a JSON string comes back as that string.
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


Text = Annotated[str, StringConstraints(min_length=1)]
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]
Metadata = Annotated[dict[str, Any], BeforeValidator(_metadata)]


class Answer(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _PageMeta(Answer):
    page_count: int | None = Field(default=None, alias="pageCount")
    next: str | None = None


class AnswerList(Answer, Generic[Item]):
    """A list answer's envelope: `data` and the paging `meta` (absent, null or {} when there is none)."""

    data: list[Item]
    meta: Annotated[_PageMeta | None, BeforeValidator(_absent_if_empty)] = None

    @property
    def page_count(self) -> int | None:
        return self.meta.page_count if self.meta else None

    @property
    def next_cursor(self) -> str | None:
        return self.meta.next if self.meta else None


# Collections


class InitializeAnswer(Answer):
    authorization_url: Text
    access_code: Text
    reference: Text

    def result(self) -> InitializeResult:
        return InitializeResult(
            authorization_url=self.authorization_url, access_code=self.access_code, reference=self.reference
        )


class _Authorization(Answer):
    authorization_code: str | None = None


class _Customer(Answer):
    email: str | None = None


class VerifyAnswer(Answer):
    """GET /transaction/verify/{reference}."""

    id: int
    status: Text
    reference: Text
    amount: int
    currency: Text
    paid_at: Timestamp = None
    channel: str | None = None
    gateway_response: str | None = None
    fees: int | None = None
    metadata: Metadata = Field(default_factory=dict)
    authorization: Annotated[_Authorization | None, BeforeValidator(_absent_if_empty)] = None
    customer: Annotated[_Customer | None, BeforeValidator(_absent_if_empty)] = None
    requested_amount: int | None = None

    def result(self) -> VerifiedTransaction:
        return VerifiedTransaction(
            id=self.id,
            status=self.status,
            reference=self.reference,
            amount=self.amount,
            currency=self.currency,
            paid_at=self.paid_at,
            channel=self.channel,
            gateway_response=self.gateway_response,
            fees=self.fees,
            metadata=self.metadata,
            authorization_code=self.authorization.authorization_code if self.authorization else None,
            customer_email=self.customer.email if self.customer else None,
            requested_amount=self.requested_amount,
        )


class TransactionListItem(Answer):
    """An item of GET /transaction (and verify's answer read the same way), for reconciliation. Items name
    their timestamps in snake case, camel case or both."""

    id: int
    reference: Text
    status: Text
    amount: int
    requested_amount: int | None = None
    currency: Text
    paid_at: Timestamp = None
    paid_at_camel: Timestamp = Field(default=None, alias="paidAt")
    created_at: Timestamp = None
    created_at_camel: Timestamp = Field(default=None, alias="createdAt")

    def record(self) -> TransactionRecord:
        return TransactionRecord(
            id=self.id,
            reference=self.reference,
            status=self.status,
            amount=self.amount,
            requested_amount=self.requested_amount,
            currency=self.currency,
            paid_at=self.paid_at or self.paid_at_camel,
            created_at=self.created_at or self.created_at_camel,
        )


# Refunds


class _RefundedCharge(Answer):
    id: int | None = None
    reference: str | None = None


class RefundAnswer(Answer):
    """POST /refund, GET /refund/{id} and the items of GET /refund. Create answers with the whole charge
    object; fetch and list with its id (and sometimes a `transaction_reference`). Fetch and create say
    `createdAt`, list says `created_at`."""

    id: int
    status: Text
    amount: int
    currency: Text
    transaction: Annotated[_RefundedCharge | int | None, BeforeValidator(_absent_if_empty)] = None
    transaction_reference: str | None = None
    merchant_note: str | None = None
    created_at_camel: Timestamp = Field(default=None, alias="createdAt")
    created_at: Timestamp = None

    def result(self) -> RefundResult:
        if isinstance(self.transaction, _RefundedCharge):
            transaction_id, transaction_reference = self.transaction.id, self.transaction.reference
        else:
            transaction_id, transaction_reference = self.transaction, self.transaction_reference
        return RefundResult(
            id=self.id,
            status=self.status,
            amount=self.amount,
            currency=self.currency,
            transaction_reference=transaction_reference,
            transaction_id=transaction_id,
            merchant_note=self.merchant_note,
            created_at=self.created_at_camel or self.created_at,
        )


# Payouts


class _RecipientDetails(Answer):
    account_number: str | None = None
    bank_code: str | None = None


class RecipientAnswer(Answer):
    """POST /transferrecipient."""

    recipient_code: Text
    name: Text
    details: Annotated[_RecipientDetails | None, BeforeValidator(_absent_if_empty)] = None

    def result(self) -> TransferRecipient:
        account_number = self.details.account_number if self.details else None
        return TransferRecipient(
            recipient_code=self.recipient_code,
            name=self.name,
            bank_code=self.details.bank_code if self.details else None,
            account_last4=account_number[-4:] if account_number else None,
        )


class TransferAnswer(Answer):
    """POST /transfer and GET /transfer/verify/{reference}. Older answers (the OTP one among them) leave
    the reference out."""

    reference: str | None = None
    transfer_code: str | None = None
    status: Text
    amount: int
    currency: Text

    def result(self, *, reference: str) -> TransferResult:
        """The answer about the transfer under our `reference`; one that names another transfer is off
        the contract."""
        if self.reference and self.reference != reference:
            raise GatewayProtocolError(f"Paystack answered about transfer {self.reference!r}, not {reference!r}")
        return TransferResult(
            reference=reference,
            transfer_code=self.transfer_code,
            status=self.status,
            amount=self.amount,
            currency=self.currency,
        )


class TransferListItem(Answer):
    """An item of GET /transfer, for reconciliation. Older items carry no `reference`."""

    reference: str | None = None
    transfer_code: str | None = None
    status: Text
    amount: int
    currency: Text
    created_at: Timestamp = None
    created_at_camel: Timestamp = Field(default=None, alias="createdAt")

    def record(self) -> TransferRecord:
        return TransferRecord(
            reference=self.reference,
            transfer_code=self.transfer_code,
            status=self.status,
            amount=self.amount,
            currency=self.currency,
            created_at=self.created_at or self.created_at_camel,
        )


class BulkTransferAnswerItem(Answer):
    """An item of POST /transfer/bulk. Older answers give neither reference nor status; `recipient` is our
    recipient code, or something else (an id) that cannot be matched."""

    reference: str | None = None
    transfer_code: str | None = None
    status: str | None = None
    amount: int
    currency: Text
    recipient: Any = None

    @property
    def recipient_and_amount(self) -> tuple[str | None, int]:
        return self.recipient if isinstance(self.recipient, str) else None, self.amount


def bulk_results(items: list[BulkTransferAnswerItem], sent: list[BulkTransferItem]) -> list[TransferResult]:
    """Match a bulk answer's items to the transfers we sent. An item with a reference is that transfer. An
    item without one is matched only when its recipient and amount single out one transfer, among those
    sent and among the answer's unreferenced items; anything else is left without a result (unknown
    outcome), never guessed."""
    sent_references = {transfer.reference for transfer in sent}
    referenced = {item.reference for item in items if item.reference}
    if foreign := referenced - sent_references:
        raise GatewayProtocolError(f"Paystack's bulk answer names transfers we did not send: {sorted(foreign)}")
    candidates: dict[tuple[str | None, int], list[str]] = defaultdict(list)
    for transfer in sent:
        if transfer.reference not in referenced:
            candidates[(transfer.recipient, transfer.amount)].append(transfer.reference)
    unreferenced = Counter(item.recipient_and_amount for item in items if not item.reference)
    results = []
    for item in items:
        reference = item.reference
        if not reference:
            key = item.recipient_and_amount
            if len(candidates[key]) != 1 or unreferenced[key] != 1:
                continue
            [reference] = candidates[key]
        results.append(
            TransferResult(
                reference=reference,
                transfer_code=item.transfer_code,
                status=item.status or None,
                amount=item.amount,
                currency=item.currency,
            )
        )
    return results


class BankAnswer(Answer):
    """An item of GET /bank."""

    name: Text
    code: Text
    currency: Text
    type: Text | None = None

    def result(self) -> Bank:
        return Bank(name=self.name, code=self.code, currency=self.currency, type=self.type)


class BalanceAnswer(Answer):
    """An item of GET /balance."""

    currency: Text
    balance: int

    def result(self) -> Balance:
        return Balance(currency=self.currency, balance=self.balance)


class ResolveAnswer(Answer):
    """GET /bank/resolve."""

    account_number: Text
    account_name: Text
    bank_id: int | None = None

    def result(self) -> ResolvedAccount:
        return ResolvedAccount(
            account_number=self.account_number, account_name=self.account_name, bank_id=self.bank_id
        )


class ValidateAnswer(Answer):
    """POST /bank/validate: Paystack answers 200 once it attempted the check; `verified` is the verdict."""

    verified: bool
    verification_message: str | None = Field(default=None, alias="verificationMessage")

    def result(self) -> AccountValidation:
        return AccountValidation(verified=self.verified, message=self.verification_message)
