"""Every entity's statuses, and the one table per entity of the moves allowed between them.

`advance(row, status)` is the only way code changes a status: a move the table does not list raises
`InvalidState` (409) and changes nothing. Statuses are `StrEnum`s, so they compare equal to the strings
stored in the database and shown by the API.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Protocol

from app.core.errors import InvalidState


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    ABANDONED = "abandoned"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    UNKNOWN = "unknown"
    NEEDS_ATTENTION = "needs_attention"
    PROCESSED = "processed"
    FAILED = "failed"


class PayoutStatus(StrEnum):
    PENDING = "pending"
    # The gateway's balance in the payout's currency was short: the money stays payable, retried later.
    AWAITING_FUNDS = "awaiting_funds"
    PROCESSING = "processing"
    # The gateway holds the transfer until an admin finalizes it with the OTP Paystack sent.
    AWAITING_OTP = "awaiting_otp"
    PAID = "paid"
    FAILED = "failed"
    REVERSED = "reversed"


# Payouts whose transfer exists at the gateway and has not ended: their money is in `payout:in_flight`
# (`payout:{id}:{attempt}:sent` posted, neither paid nor returned), and their account cannot be deleted.
PAYOUT_IN_FLIGHT = (PayoutStatus.PROCESSING, PayoutStatus.AWAITING_OTP)


class MilestoneStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    RELEASED = "released"


class ReleaseStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    RELEASED = "released"


class DisputeStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ShareTransferStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class RevenueDeclarationStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    RECORDED = "recorded"
    REPLACED = "replaced"


_P, _R, _O = PaymentStatus, RefundStatus, PayoutStatus
_D = RevenueDeclarationStatus
TRANSITIONS: Final[dict[type[StrEnum], dict[StrEnum, frozenset[StrEnum]]]] = {
    # A charge the gateway failed or we abandoned may still succeed later (verified again): it is credited then.
    PaymentStatus: {
        _P.PENDING: frozenset({_P.SUCCESS, _P.FAILED, _P.ABANDONED}),
        _P.FAILED: frozenset({_P.SUCCESS}),
        _P.ABANDONED: frozenset({_P.SUCCESS}),
        _P.SUCCESS: frozenset({_P.PARTIALLY_REFUNDED, _P.REFUNDED}),
        _P.PARTIALLY_REFUNDED: frozenset({_P.PARTIALLY_REFUNDED, _P.REFUNDED}),
        _P.REFUNDED: frozenset(),
    },
    # Sent at most once: nothing goes back to `pending` once the gateway may have it, except a send that was
    # refused before it left (`sending -> pending`, rate limited or not reached).
    RefundStatus: {
        _R.PENDING: frozenset({_R.SENDING}),
        _R.SENDING: frozenset({_R.PENDING, _R.SENT, _R.UNKNOWN, _R.NEEDS_ATTENTION, _R.PROCESSED, _R.FAILED}),
        _R.UNKNOWN: frozenset({_R.SENT, _R.NEEDS_ATTENTION, _R.PROCESSED, _R.FAILED}),
        _R.SENT: frozenset({_R.NEEDS_ATTENTION, _R.PROCESSED, _R.FAILED}),
        _R.NEEDS_ATTENTION: frozenset({_R.SENT, _R.PROCESSED, _R.FAILED}),
        _R.PROCESSED: frozenset(),
        _R.FAILED: frozenset(),
    },
    # `processing -> processing`: a worker takes over a payout whose lease ran out (same reference, so the
    # gateway cannot pay it twice). A paid payout can still be reversed by the receiving bank; a failed or
    # reversed one is retried by an admin. `awaiting_funds` never left (no transfer exists): it is claimed
    # again like a pending one. `awaiting_otp -> processing` is the claim of a finalize (or the gateway saying
    # the transfer went on); a refused OTP puts it back.
    PayoutStatus: {
        _O.PENDING: frozenset({_O.PROCESSING, _O.AWAITING_FUNDS}),
        _O.AWAITING_FUNDS: frozenset({_O.PROCESSING, _O.AWAITING_FUNDS}),
        _O.PROCESSING: frozenset({_O.PROCESSING, _O.AWAITING_OTP, _O.PAID, _O.FAILED, _O.REVERSED}),
        _O.AWAITING_OTP: frozenset({_O.PROCESSING, _O.PAID, _O.FAILED, _O.REVERSED}),
        _O.PAID: frozenset({_O.REVERSED}),
        _O.FAILED: frozenset({_O.PENDING}),
        _O.REVERSED: frozenset({_O.PENDING}),
    },
    # Released once per deposit, and a milestone is released again for each later deposit.
    MilestoneStatus: {
        MilestoneStatus.PENDING: frozenset({MilestoneStatus.COMPLETED}),
        MilestoneStatus.COMPLETED: frozenset({MilestoneStatus.RELEASED}),
        MilestoneStatus.RELEASED: frozenset({MilestoneStatus.RELEASED}),
    },
    ReleaseStatus: {
        ReleaseStatus.PENDING_APPROVAL: frozenset({ReleaseStatus.APPROVED, ReleaseStatus.REJECTED}),
        ReleaseStatus.APPROVED: frozenset({ReleaseStatus.RELEASED}),
        ReleaseStatus.REJECTED: frozenset(),
        ReleaseStatus.RELEASED: frozenset(),
    },
    DisputeStatus: {
        DisputeStatus.OPEN: frozenset({DisputeStatus.RESOLVED}),
        DisputeStatus.RESOLVED: frozenset(),
    },
    ShareTransferStatus: {
        ShareTransferStatus.PENDING: frozenset({
            ShareTransferStatus.COMPLETED, ShareTransferStatus.CANCELLED, ShareTransferStatus.EXPIRED,
        }),
        ShareTransferStatus.COMPLETED: frozenset(),
        ShareTransferStatus.CANCELLED: frozenset(),
        ShareTransferStatus.EXPIRED: frozenset(),
    },
    # A correction replaces a declaration nothing was paid on (awaiting its payment, or with nothing to
    # collect); a paid one stands.
    RevenueDeclarationStatus: {
        _D.PENDING: frozenset({_D.PAID, _D.REPLACED}),
        _D.RECORDED: frozenset({_D.REPLACED}),
        _D.PAID: frozenset(),
        _D.REPLACED: frozenset(),
    },
}


class HasStatus(Protocol):
    status: str


def allowed(current: StrEnum, target: StrEnum) -> bool:
    return target in TRANSITIONS[type(target)][current]


def advance(row: HasStatus, target: StrEnum) -> None:
    """Move `row` to `target`, or raise InvalidState (409) if its table does not allow the move."""
    current = type(target)(row.status)
    if not allowed(current, target):
        raise InvalidState(f"A {current} {type(row).__name__.lower()} cannot become {target}", status=str(current))
    row.status = target
