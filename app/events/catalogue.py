"""Every event type the service emits, with what it means: the endpoints' `events` filter accepts these names
(or `*`), and docs/events.md lists them."""

from __future__ import annotations

from typing import Final

ALL: Final = "*"

EVENT_TYPES: Final[dict[str, str]] = {
    "payment.succeeded": "A payment's charge was verified at the gateway and applied (data: the payment).",
    "payment.failed": "The gateway reports the charge failed or was reversed (data: the payment).",
    "payment.flagged": "The gateway reports a successful charge whose amount or currency differs from the one "
    "asked for: nothing was credited, an admin decides (data: the payment, with `flag_reason`).",
    "deposit.held": "An investment's money entered the app's escrow (data: the escrow transaction).",
    "release.requested": "An owner asked for a milestone's money; it waits for approval (data: the release).",
    "release.approved": "A release has the approvals it needs (data: the release).",
    "release.rejected": "An approver rejected a release (data: the release).",
    "release.executed": "A release's money left escrow for the owner (data: the release).",
    "refund.processed": "The gateway settled a refund (data: the refund).",
    "refund.failed": "The gateway failed a refund; the money went back where it came from (data: the refund).",
    "dispute.opened": "An investor or a chargeback froze part of a deposit (data: the dispute).",
    "dispute.resolved": "A dispute was resolved (data: the dispute, with its `outcome`).",
    "payout.paid": "A payout's transfer succeeded (data: the payout).",
    "payout.failed": "A payout's transfer failed or was reversed; the money is owed again (data: the payout).",
    "payout.awaiting_otp": "A payout's transfer waits for the OTP Paystack sent (data: the payout).",
    "distribution.created": "An app's revenue for a period was shared out (data: the distribution).",
    "milestone.overdue": "A pending milestone passed its due date (data: the milestone).",
    "share_transfer.completed": "A buyer paid for a share transfer; the shares moved (data: the transfer).",
}
