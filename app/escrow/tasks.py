"""The worker's escrow jobs: Paystack chargebacks (`charge.dispute.create` freezes the deposit,
`charge.dispute.resolve` moves the money out of escrow or unfreezes it, and anything unclear stays frozen
and is flagged), and milestones that pass their due date still pending."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from app.core import metrics
from app.escrow.deposits import available, lock_deposits
from app.escrow.disputes import (
    ACCEPTED_RESOLUTIONS,
    CHARGE_STATUSES_AFTER,
    DECLINED_RESOLUTIONS,
    UnclearResolution,
    _charge_back,
    _close,
    _freeze,
    _unfreeze,
)
from app.escrow.milestones import mark_overdue
from app.escrow.schemas import MilestoneOut
from app.events.record import emit
from app.models import App, Dispute, EscrowTransaction, Payment
from app.models.base import utcnow
from app.models.escrow import GATEWAY_DISPUTE_ID_LENGTH
from app.models.payments import REFERENCE_LENGTH
from app.runtime import Runtime
from app.webhooks.inbox import MalformedEvent, RetryLater, amount_field, text_field

log = logging.getLogger(__name__)


def _charge_reference(data: dict[str, Any]) -> str | None:
    """Paystack's documented dispute bodies carry `transaction_reference: null` and the reference in
    `transaction.reference`; either may be the one given."""
    transaction = data.get("transaction")
    return text_field(data, "transaction_reference", max_length=REFERENCE_LENGTH) or (
        text_field(transaction, "reference", max_length=REFERENCE_LENGTH) if isinstance(transaction, dict) else None
    )


def _gateway_id(data: dict[str, Any]) -> str:
    gateway_id = text_field(data, "id", max_length=GATEWAY_DISPUTE_ID_LENGTH)
    if gateway_id is None:
        raise MalformedEvent("id is missing: the dispute could not be matched to its resolution")
    return gateway_id


def _shown(value: object, length: int = 64) -> str:
    """A value from the event as it may be stored and logged: short, printable text."""
    return value if isinstance(value, str) and value.isprintable() and len(value) <= length else repr(value)[:length]


async def handle_chargeback(rt: Runtime, data: dict[str, Any]) -> str:
    """A chargeback freezes the deposit by itself, whatever the feature flag says about our own disputes."""
    gateway_id = _gateway_id(data)
    reference = _charge_reference(data)
    if reference is None:
        raise MalformedEvent("the disputed charge's reference is missing")
    try:
        asked, unclear = amount_field(data, "refund_amount"), None
    except MalformedEvent as error:
        asked, unclear = None, f"{error}: the whole deposit is frozen"
    async with rt.db.unit_of_work() as session:
        if await session.scalar(select(Dispute.id).where(Dispute.gateway_dispute_id == gateway_id)):
            return "duplicate"
        deposit = await session.scalar(
            select(EscrowTransaction)
            .join(Payment, Payment.id == EscrowTransaction.payment_id)
            .where(Payment.reference == reference, EscrowTransaction.type == "deposit")
        )
        if deposit is None:
            return "ignored"
        deposit = (await lock_deposits(session, [deposit.id]))[deposit.id]
        amount = min(asked or deposit.amount, available(deposit))
        if amount <= 0:
            log.warning("chargeback %s on %s: nothing left to freeze", gateway_id, deposit.id)
            return "ignored"
        category = data.get("category")
        label = category if isinstance(category, str) and category.isprintable() and len(category) <= 40 else "dispute"
        dispute = await _freeze(session, deposit, amount, reason=f"chargeback ({label})", source="gateway",
                                gateway_dispute_id=gateway_id)
        if unclear is not None:
            _flag(dispute, "amount", unclear, gateway_id)
    return "processed"


# Paystack's resolutions: accepted by the merchant or, unanswered in time, automatically (the customer
# has the money back); or declined (the merchant keeps it).


def _taken_back(data: dict[str, Any], dispute: Dispute) -> int:
    """How much of the frozen money the bank took back: 0 when the chargeback was declined.
    UnclearResolution when the event does not say so unambiguously."""
    resolution = data.get("resolution")
    if isinstance(resolution, str) and resolution in ACCEPTED_RESOLUTIONS:
        verdict = "lost"
    elif isinstance(resolution, str) and resolution in DECLINED_RESOLUTIONS:
        verdict = "won"
    else:
        raise UnclearResolution("resolution", f"unknown resolution {_shown(resolution)}")
    transaction = data.get("transaction")
    status = transaction.get("status") if isinstance(transaction, dict) else None
    if status is not None and not (isinstance(status, str) and status in CHARGE_STATUSES_AFTER[verdict]):
        raise UnclearResolution(
            "contradiction", f"resolution {resolution} contradicted by the charge's status {_shown(status)}")
    currency = data.get("currency")
    if currency is not None and _shown(currency).upper() != dispute.currency:
        raise UnclearResolution("currency", f"resolution in {_shown(currency)}, the dispute is in {dispute.currency}")
    if verdict == "won":
        return 0
    try:
        taken = amount_field(data, "refund_amount")
    except MalformedEvent as error:
        raise UnclearResolution("amount", str(error)) from None
    if taken is None:
        return dispute.amount
    if not 0 < taken <= dispute.amount:
        raise UnclearResolution("amount", f"the bank took back {taken}, {dispute.amount} was frozen")
    return taken


def _flag(dispute: Dispute, label: str, reason: str, gateway_id: str) -> None:
    """Leave the chargeback's money frozen and the dispute open for an admin, and say why."""
    dispute.flag_reason = reason[:500]
    log.error("chargeback %s (dispute %s) left frozen for an admin: %s", gateway_id, dispute.id, reason)
    metrics.CHARGEBACKS_FLAGGED.labels(reason=label).inc()


async def handle_chargeback_resolved(rt: Runtime, data: dict[str, Any]) -> str:
    """Accepted: the bank took the money back; declined: we keep it and it is unfrozen. Anything unclear
    keeps the money frozen and flags the dispute for an admin."""
    gateway_id = _gateway_id(data)
    async with rt.db.unit_of_work() as session:
        dispute = await session.scalar(
            select(Dispute).where(Dispute.gateway_dispute_id == gateway_id).with_for_update()
        )
        if dispute is None:
            raise RetryLater("dispute not opened yet")
        if dispute.status != "open":
            return "duplicate"
        resolution = data.get("resolution")
        dispute.gateway_resolution = None if resolution is None else _shown(resolution)
        try:
            taken = _taken_back(data, dispute)
        except UnclearResolution as unclear:
            _flag(dispute, unclear.label, str(unclear), gateway_id)
            return "flagged"
        deposit = await _unfreeze(session, dispute)
        if taken:
            await _charge_back(session, dispute, deposit, taken)
            await _close(session, dispute, "refund" if taken == dispute.amount else "partial_refund", taken,
                         f"chargeback {resolution} at the gateway", "paystack")
        else:
            await _close(session, dispute, "dismiss", 0, "chargeback declined at the gateway", "paystack")
    return "processed"


async def flag_overdue_milestones(rt: Runtime) -> int:
    """Reconciler: pending milestones past their due date (a UTC day) become overdue, each once.

    `milestone.overdue` is emitted here, for each milestone `mark_overdue` returns, in this same unit of
    work: the flag and its event commit together, and a milestone flagged by another pass is never returned
    again."""
    now = utcnow()
    async with rt.db.unit_of_work() as session:
        flagged = await mark_overdue(session, now.date(), now)
        owners = dict((await session.execute(
            select(App.id, App.owner_id).where(App.id.in_({m.app_id for m in flagged})))).all()) if flagged else {}
        for milestone in flagged:
            emit(session, "milestone.overdue", MilestoneOut.model_validate(milestone),
                 subjects=[owners.get(milestone.app_id)])
    for milestone in flagged:
        log.info("milestone %s of app %s is overdue (due %s)", milestone.id, milestone.app_id, milestone.due_date)
    return len(flagged)
