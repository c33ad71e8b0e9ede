"""Refunds out of one deposit, back to the investor through the gateway.

The money leaves escrow when the refund is asked for (`escrow:app ->
refund:in_flight`); `refund.processed` settles it and `refund.failed` puts it
back in escrow. A full refund of a deposit with nothing released reserves the
investor's shares at once and cancels them when the refund is processed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.money import to_major
from app.escrow.deposits import deposit_status, lock_deposits
from app.escrow.movements import RefundMade, RefundMoney, apply_one
from app.escrow.schemas import RefundOut
from app.models import EscrowTransaction, Refund
from app.runtime import Runtime
from app.shares.service import cancel_reserved_shares, unreserve_shares


async def refund_deposit(
    session: AsyncSession,
    rt: Runtime,
    deposit_id: str,
    *,
    amount: int | None,
    reason: str,
    frozen_allowed: int = 0,
) -> Refund:
    """Refund `amount` (default: all that remains) of a deposit in the caller's transaction.

    `frozen_allowed` is how much frozen money this refund may take: only dispute
    resolution, which unfreezes in the same transaction, passes it.
    """
    made = await apply_one(session, rt, RefundMoney(deposit_id=deposit_id, amount=amount, reason=reason,
                                                    frozen_allowed=frozen_allowed))
    assert made is not None
    return await session.get_one(Refund, made.refund_id)


async def on_refund_settled(session: AsyncSession, refund: Refund) -> None:
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



def refund_out(made: RefundMade) -> RefundOut:
    # just asked for: the gateway is asked after commit, so it is pending
    return RefundOut(
        id=made.refund_id, transaction_id=made.deposit_id, escrow_transaction_id=made.record_id,
        payment_reference=made.payment_reference, amount=to_major(made.amount, made.currency),
        currency=made.currency, status="pending", reason=made.reason, created_at=made.created_at,
    )
