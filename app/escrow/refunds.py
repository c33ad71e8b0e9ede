"""Refunds out of one deposit, back to the investor through the gateway.

The money leaves escrow when the refund is asked for (`escrow:app ->
refund:in_flight`); `refund.processed` settles it and `refund.failed` puts it
back in escrow. A full refund of a deposit with nothing released reserves the
investor's shares at once and cancels them when the refund is processed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import FundsFrozen, InsufficientFunds, InvalidAmount, InvalidState
from app.core.money import to_major
from app.escrow.deposits import available, deposit_status, lock_deposits, remaining
from app.escrow.schemas import RefundOut
from app.ledger import accounts
from app.models import EscrowTransaction, Payment, Refund
from app.models.base import new_id
from app.payments.refunds import SETTLEMENT_HOOKS, queue_refund
from app.runtime import Runtime
from app.shares.service import cancel_reserved_shares, reserve_shares, unreserve_shares


async def refund_deposit(
    session: AsyncSession,
    rt: Runtime,
    deposit_id: str,
    *,
    amount: int | None,
    reason: str,
    frozen_allowed: int = 0,
) -> Refund:
    """Refund `amount` (default: all that remains) of a deposit.

    `frozen_allowed` is how much frozen money this refund may take: only dispute
    resolution, which unfreezes in the same transaction, passes it.
    """
    deposit = (await lock_deposits(session, [deposit_id]))[deposit_id]
    left = remaining(deposit)
    free = available(deposit) + frozen_allowed
    amount = left if amount is None else amount
    if amount <= 0:
        raise InsufficientFunds("Nothing is left in this deposit to refund") if left == 0 else InvalidAmount(
            "The refund must be more than zero")
    if amount > left:
        raise InsufficientFunds("That is more than the deposit still holds", transaction_id=deposit.id,
                                remaining=to_major(left, deposit.currency))
    if amount > free:
        raise FundsFrozen("Part of this deposit is frozen by a dispute; resolve the dispute instead",
                          transaction_id=deposit.id, frozen=to_major(deposit.frozen, deposit.currency))
    payment = await session.get(Payment, deposit.payment_id) if deposit.payment_id else None
    if payment is None:
        raise InvalidState("This deposit was not collected through the gateway and cannot be refunded there")

    cancels_shares = deposit.released == 0 and deposit.refunded + amount == deposit.amount and deposit.shares > 0
    if cancels_shares:
        await reserve_shares(session, app_id=deposit.app_id, user_id=deposit.investor_id, shares=deposit.shares)
    deposit.refunded += amount
    deposit.status = deposit_status(deposit)
    record = EscrowTransaction(
        id=new_id("esc"), type="refund", app_id=deposit.app_id, investor_id=deposit.investor_id, amount=amount,
        currency=deposit.currency, status="pending", gateway_reference=deposit.gateway_reference,
        deposit_id=deposit.id, shares=deposit.shares if cancels_shares else 0, released=0, refunded=0, frozen=0,
        refund_id=new_id("rfd"),
    )
    session.add(record)
    escrow = accounts.escrow(deposit.app_id, deposit.currency)
    refund = await queue_refund(session, payment, amount=amount, source_account=escrow, return_account=escrow,
                                reason=reason or "escrow refund", escrow_transaction_id=record.id,
                                refund_id=record.refund_id)
    rt.notify_worker()
    return refund


async def _on_refund_settled(session: AsyncSession, refund: Refund) -> None:
    if refund.escrow_transaction_id is None:
        return
    record = await session.get(EscrowTransaction, refund.escrow_transaction_id, with_for_update=True)
    assert record is not None and record.deposit_id is not None
    if refund.status == "processed":
        record.status = "processed"
        if record.shares:
            await cancel_reserved_shares(session, app_id=record.app_id, user_id=record.investor_id,
                                         shares=record.shares, source_id=record.id)
        return
    record.status = "failed"
    deposit = (await lock_deposits(session, [record.deposit_id]))[record.deposit_id]
    deposit.refunded -= refund.amount
    deposit.status = deposit_status(deposit)
    if record.shares:
        await unreserve_shares(session, app_id=record.app_id, user_id=record.investor_id, shares=record.shares)


SETTLEMENT_HOOKS.append(_on_refund_settled)


async def refund_out(session: AsyncSession, refund: Refund) -> RefundOut:
    payment = await session.get(Payment, refund.payment_id)
    record_id = refund.escrow_transaction_id
    record = await session.get(EscrowTransaction, record_id) if record_id else None
    # the contract's statuses: pending until the gateway settles it
    status = {"processing": "pending", "needs_attention": "pending"}.get(refund.status, refund.status)
    return RefundOut(
        id=refund.id, transaction_id=record.deposit_id if record else None,
        escrow_transaction_id=refund.escrow_transaction_id,
        payment_reference=payment.reference if payment else None, amount=to_major(refund.amount, refund.currency),
        currency=refund.currency, status=status, reason=refund.reason, created_at=refund.created_at,
    )
