"""Refunds out of one deposit, back to the investor through the gateway.

The money leaves escrow when the refund is asked for (`escrow:app ->
refund:in_flight`); `refund.processed` settles it and `refund.failed` puts it
back in escrow. A full refund of a deposit with nothing released reserves the
investor's shares at once and cancels them when the refund is processed.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidAmount
from app.core.money import MoneyError, to_major, to_minor
from app.escrow.deposits import deposit_status, find_deposit, lock_deposits
from app.escrow.movements import RefundMoney, apply_one
from app.escrow.queue import Finish
from app.escrow.schemas import RefundOut
from app.models import EscrowTransaction, Payment, Refund
from app.payments.refunds import SETTLEMENT_HOOKS
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
    refund = await apply_one(session, rt, RefundMoney(deposit_id=deposit_id, amount=amount, reason=reason,
                                                      frozen_allowed=frozen_allowed))
    assert refund is not None
    return refund


async def request_refund(rt: Runtime, deposit_id: str, *, amount: Decimal | None, reason: str) -> RefundOut:
    """An admin refunds `amount` (major units; default all that remains) of a deposit, in the next
    batch of the escrow queue."""

    async def prepare(session: AsyncSession) -> tuple[RefundMoney, Finish]:
        deposit = await find_deposit(session, deposit_id)  # `apply` locks it, with the batch's others, in id order
        try:
            minor = None if amount is None else to_minor(amount, deposit.currency)
        except MoneyError as exc:
            raise InvalidAmount(str(exc)) from None

        async def finish(refund: object) -> RefundOut:
            assert isinstance(refund, Refund)
            return await refund_out(session, refund)

        return RefundMoney(deposit_id=deposit_id, amount=minor, reason=reason), finish

    return await rt.escrow_queue.run(prepare)


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
