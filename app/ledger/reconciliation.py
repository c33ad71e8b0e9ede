"""Reconciliation with the gateway: what our books say moved against what Paystack says moved.

For a period it compares, one record at a time, the successful charges (payments), the transfers
(payouts) and the refunds, and reports every difference: a record missing at the gateway, one
missing here, or one whose amount, currency or status differs. It only reads: a difference is for
a person to look into, never something to "fix" by moving money.

Windows and clocks. Paystack stamps a charge when it is initialized and we stamp the payment just
after its answer; it stamps a transfer when our send reaches it and we stamp the `sent` journal
entry just before. Both clocks can also drift. So a record belongs to the window by its own side's
stamp (ours for what we know, Paystack's for what only it has), the gateway's list is read over a
window wider by EDGE_MARGIN on both ends, and a record of ours still absent from that list is asked
for by reference before it is called missing: a charge paid at 23:59:59 is never reported missing
because Paystack stamped it a second later. What the gateway lists, we look up by reference
whatever its date, so nothing is "missing here" because our stamp fell outside the window.

This module holds the rules (windows, comparisons); `app/ledger/flows.py` reads both sides and runs them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal, TypeVar

from app.core.errors import ValidationFailed
from app.core.money import to_major
from app.gateway.types import (
    TRANSFER_CONCLUSIVE_FAILURES,
    TRANSFER_IN_PROGRESS,
    RefundResult,
    TransactionRecord,
    TransferRecord,
    TransferResult,
)
from app.models import Payment, Payout, Refund
from app.models.base import utcnow

log = logging.getLogger(__name__)

Row = TypeVar("Row")
Found = TypeVar("Found")

Kind = Literal["missing_at_gateway", "missing_in_ledger", "amount_differs", "currency_differs", "status_differs"]
RecordType = Literal["charge", "transfer", "refund"]
KINDS: Final[tuple[Kind, ...]] = (
    "missing_at_gateway", "missing_in_ledger", "amount_differs", "currency_differs", "status_differs",
)
RECORD_TYPES: Final[tuple[RecordType, ...]] = ("charge", "transfer", "refund")

EDGE_MARGIN: Final = timedelta(minutes=10)
DEFAULT_PERIOD: Final = timedelta(days=7)
MAX_PERIOD: Final = timedelta(days=31)
LOOKUP_CHUNK: Final = 500

# Our payment statuses once the money was charged, and the gateway statuses that agree with each:
# Paystack may show a charge refunded in full as `reversed`.
CHARGE_STATUSES_AGREEING: Final[dict[str, frozenset[str]]] = {
    "success": frozenset({"success"}),
    "partially_refunded": frozenset({"success", "reversed"}),
    "refunded": frozenset({"success", "reversed"}),
}
# Our payout statuses, and the transfer statuses that agree with each. A payout back to `pending`
# was retried after a conclusive failure of its last transfer.
TRANSFER_STATUSES_AGREEING: Final[dict[str, frozenset[str]]] = {
    "processing": TRANSFER_IN_PROGRESS,
    # held for its OTP, or finalized (in Paystack's dashboard) and not yet heard of: the reconciler catches up
    "awaiting_otp": TRANSFER_IN_PROGRESS,
    "paid": frozenset({"success"}),
    "failed": TRANSFER_CONCLUSIVE_FAILURES,
    "reversed": TRANSFER_CONCLUSIVE_FAILURES,
    "pending": TRANSFER_CONCLUSIVE_FAILURES,
    "awaiting_funds": TRANSFER_CONCLUSIVE_FAILURES,
}
# The gateway must have these: the money left (or is leaving) through a transfer.
PAYOUT_STATUSES_AT_GATEWAY: Final = ("processing", "awaiting_otp", "paid")
# A refund's ending; any other status of ours is open, which the gateway's open statuses agree with.
REFUND_ENDINGS: Final = frozenset({"processed", "failed"})
GATEWAY_REFUND_OPEN: Final = frozenset({"pending", "processing", "needs-attention"})

# Our refund ids (`app.models.base.new_id("rfd")`) as they appear in a refund's merchant note.
_REFUND_ID_IN_NOTE = re.compile(r"\brfd_[0-9a-f]{12,}\b")


@dataclass(frozen=True)
class Difference:
    kind: Kind
    record: RecordType
    reference: str
    ledger: dict[str, Any] | None  # our side, or None when we have nothing
    gateway: dict[str, Any] | None  # the gateway's side, or None when it has nothing


@dataclass(frozen=True)
class Window:
    """[start, end): the period reported on."""

    start: datetime
    end: datetime

    def holds(self, moment: datetime | None) -> bool:
        """Whether a gateway record stamped `moment` belongs here; one without a stamp was listed for
        this window, so it does."""
        return moment is None or self.start <= moment < self.end

    @property
    def listed_from(self) -> datetime:
        return self.start - EDGE_MARGIN

    @property
    def listed_to(self) -> datetime:
        return self.end + EDGE_MARGIN


@dataclass(frozen=True)
class Reconciliation:
    window: Window
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class GatewayRefund:
    """A refund as the gateway lists it, in the terms the comparison needs."""

    id: int
    refund_id: str | None  # ours, read from the merchant note (see `refund_id_in_note`)
    transaction_reference: str | None
    amount: int
    currency: str
    status: str
    created_at: datetime | None


def refund_id_in_note(note: str | None) -> str | None:
    """Our refund id as the refund's merchant note carries it, if it does."""
    found = _REFUND_ID_IN_NOTE.search(note or "")
    return found.group(0) if found else None


@dataclass(frozen=True)
class _Side:
    """One side's view of a record."""

    status: str
    amount: int
    currency: str
    extra: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {**self.extra, "status": self.status, "amount": to_major(self.amount, self.currency),
                "currency": self.currency}


def _compare(record: RecordType, reference: str, ours: _Side | None, theirs: _Side | None,
             agreeing: Callable[[str], Collection[str]]) -> list[Difference]:
    def difference(kind: Kind) -> Difference:
        return Difference(kind, record, reference, ours.view() if ours else None, theirs.view() if theirs else None)

    if ours is None:
        return [difference("missing_in_ledger")]
    if theirs is None:
        return [difference("missing_at_gateway")]
    found = []
    if ours.currency.casefold() != theirs.currency.casefold():
        found.append(difference("currency_differs"))
    elif ours.amount != theirs.amount:
        found.append(difference("amount_differs"))
    if theirs.status not in agreeing(ours.status):
        found.append(difference("status_differs"))
    return found


# ---- charges -------------------------------------------------------------------------------------


def _payment_side(payment: Payment) -> _Side:
    return _Side(payment.status, payment.amount, payment.currency, {"payment_id": payment.id})


def _charge_side(record: TransactionRecord) -> _Side:
    # What the customer was asked for: `amount` also holds the fees when the customer bears them.
    amount = record.requested_amount if record.requested_amount is not None else record.amount
    return _Side(record.status, amount, record.currency, {"id": record.id})


def compare_charges(payments: Iterable[Payment], charges: Iterable[TransactionRecord]) -> list[Difference]:
    """Our payments against the gateway's charges, by reference. The caller passes what belongs to the
    comparison: our charged payments of the window, and the payments the gateway's charges name."""
    ours = {payment.reference: payment for payment in payments}
    theirs = {charge.reference: charge for charge in charges}
    found: list[Difference] = []
    for reference in sorted(ours.keys() | theirs.keys()):
        payment, charge = ours.get(reference), theirs.get(reference)
        if charge is None and payment is not None and payment.status not in CHARGE_STATUSES_AGREEING:
            continue  # never charged, and the gateway agrees
        found += _compare("charge", reference, payment and _payment_side(payment), charge and _charge_side(charge),
                          lambda status: CHARGE_STATUSES_AGREEING.get(status, frozenset()))
    return found


# ---- transfers -----------------------------------------------------------------------------------


def _payout_side(payout: Payout) -> _Side:
    return _Side(payout.status, payout.amount, payout.currency, {"payout_id": payout.id})


def _transfer_side(record: TransferRecord) -> _Side:
    return _Side(record.status, record.amount, record.currency, {"transfer_code": record.transfer_code})


def compare_transfers(payouts: Iterable[Payout], transfers: Iterable[TransferRecord]) -> list[Difference]:
    """Our payouts against the gateway's transfers, by reference (by transfer code for a listed
    transfer without one). A reference sent more than once (a retry after a conclusive failure) is
    compared on its latest transfer."""
    ours = {payout.reference: payout for payout in payouts}
    by_code = {payout.transfer_code: payout.reference for payout in ours.values() if payout.transfer_code}
    theirs: dict[str, TransferRecord] = {}
    for transfer in sorted(transfers, key=lambda t: t.created_at or datetime.min.replace(tzinfo=UTC)):
        reference = transfer.reference or by_code.get(transfer.transfer_code or "") or transfer.transfer_code
        if reference:
            theirs[reference] = transfer
    found: list[Difference] = []
    for reference in sorted(ours.keys() | theirs.keys()):
        payout, transfer = ours.get(reference), theirs.get(reference)
        if transfer is None and payout is not None and payout.status not in PAYOUT_STATUSES_AT_GATEWAY:
            continue  # nothing left for the gateway (a send it refused), and it has nothing
        found += _compare("transfer", reference, payout and _payout_side(payout),
                          transfer and _transfer_side(transfer),
                          lambda status: TRANSFER_STATUSES_AGREEING.get(status, frozenset()))
    return found


def _record_of(result: TransferResult) -> TransferRecord:
    return TransferRecord(reference=result.reference, transfer_code=result.transfer_code, status=result.status,
                          amount=result.amount, currency=result.currency, created_at=None)


# ---- refunds -------------------------------------------------------------------------------------


def _refund_side(refund: Refund) -> _Side:
    return _Side(refund.status, refund.amount, refund.currency,
                 {"refund_id": refund.id, "payment_id": refund.payment_id})


def _gateway_refund_side(record: GatewayRefund) -> _Side:
    return _Side(record.status, record.amount, record.currency,
                 {"id": record.id, "transaction_reference": record.transaction_reference})


def _refund_statuses_agreeing(status: str) -> frozenset[str]:
    return frozenset({status}) if status in REFUND_ENDINGS else GATEWAY_REFUND_OPEN


def compare_refunds(gateway_refunds: Iterable[GatewayRefund], refunds: Iterable[Refund]) -> list[Difference]:
    """The gateway's refunds against ours. A gateway refund is ours when its merchant note names our
    refund, or when we recorded its gateway id. One of ours is compared with the gateway refund we
    recorded (else its earliest); any further refund at the gateway for it is money the books do
    not know of, reported one by one. Our refunds the gateway must have (it gave us an id, or we
    settled it) and does not are missing there."""
    ours = {refund.id: refund for refund in refunds}
    by_gateway_id = {refund.gateway_refund_id: refund.id for refund in ours.values() if refund.gateway_refund_id}
    matched: dict[str, list[GatewayRefund]] = {}
    found: list[Difference] = []
    for record in sorted(gateway_refunds, key=lambda r: (r.created_at or datetime.min.replace(tzinfo=UTC), r.id)):
        refund_id = by_gateway_id.get(record.id) or record.refund_id
        if refund_id in ours:
            matched.setdefault(refund_id, []).append(record)
        else:
            found += _compare("refund", refund_id or record.transaction_reference or str(record.id), None,
                              _gateway_refund_side(record), _refund_statuses_agreeing)
    for refund_id, refund in sorted(ours.items()):
        records = matched.get(refund_id, [])
        if not records and refund.gateway_refund_id is None and refund.status != "processed":
            continue  # never reached the gateway, and it has nothing
        primary = next((r for r in records if r.id == refund.gateway_refund_id), records[0] if records else None)
        found += _compare("refund", refund_id, _refund_side(refund), primary and _gateway_refund_side(primary),
                          _refund_statuses_agreeing)
        found += [Difference("missing_in_ledger", "refund", refund_id, None, _gateway_refund_side(extra).view())
                  for extra in records if extra is not primary]
    return found


# ---- running it ----------------------------------------------------------------------------------


def _gateway_refund(result: RefundResult) -> GatewayRefund:
    return GatewayRefund(id=result.id, refund_id=refund_id_in_note(result.merchant_note),
                         transaction_reference=result.transaction_reference, amount=result.amount,
                         currency=result.currency, status=result.status, created_at=result.created_at)


def requested_window(start: str | None, end: str | None, now: datetime | None = None) -> Window:
    """The window an admin asks for: ISO dates (`to` counts its whole day) or timestamps (UTC when
    they carry no offset); by default the last seven days up to now."""
    now = now or utcnow()
    end_at = _moment(end, "to", end_of_day=True) if end else now
    start_at = _moment(start, "from", end_of_day=False) if start else end_at - DEFAULT_PERIOD
    if start_at >= end_at:
        raise ValidationFailed("`from` must be before `to`", **{"from": start_at.isoformat(), "to": end_at.isoformat()})
    if end_at - start_at > MAX_PERIOD:
        raise ValidationFailed(f"A reconciliation covers at most {MAX_PERIOD.days} days", days=MAX_PERIOD.days)
    return Window(start_at, end_at)


def _moment(text: str, name: str, *, end_of_day: bool) -> datetime:
    try:
        if len(text) == len("YYYY-MM-DD"):
            day = date.fromisoformat(text) + timedelta(days=1 if end_of_day else 0)
            return datetime.combine(day, time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(f"`{name}` must be an ISO 8601 date or timestamp", **{name: text[:40]}) from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


