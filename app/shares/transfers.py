"""Share transfers: a seller reserves shares for one buyer; the buyer's payment completes the sale.

On the charge's success, in one transaction: the shares move seller -> buyer,
the money is posted `gateway -> payable:user:{seller}` less the platform fee
(`-> platform:fees`), the seller's payout is queued and the transfer completes.
A payment that succeeds for a transfer that can no longer complete is refunded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.service import check_currency, get_app, readable_by
from app.core.errors import (
    CurrencyNotSupported,
    InvalidAmount,
    InvalidState,
    NotFound,
    SharesUnavailable,
    Unauthorized,
    ValidationFailed,
)
from app.core.money import MoneyError, check_payable, percentage_of, to_major, to_minor
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.events.record import emit
from app.ledger import accounts
from app.ledger.service import Leg, post
from app.models import Holding, Payment, ShareMovement, ShareTransfer
from app.models.base import new_id, utcnow
from app.models.statuses import ShareTransferStatus, advance
from app.payments.gateway_refunds import queue_refund
from app.payments.schemas import PaymentCreate
from app.payments.types import PaymentPlan
from app.payouts.service import queue_payout
from app.runtime import Runtime
from app.shares.schemas import ShareTransferIn, ShareTransferOut
from app.shares.service import credit_holding, reserve_shares, unreserve_shares


async def offer(session: AsyncSession, rt: Runtime, principal: Principal, body: ShareTransferIn) -> ShareTransfer:
    app = await get_app(session, body.app_id)
    if body.buyer_id == principal.user_id:
        raise ValidationFailed("The buyer must be someone else")
    try:
        price = to_minor(body.price_per_share, app.currency)
    except MoneyError as exc:
        raise InvalidAmount(str(exc)) from None
    amount = price * body.shares
    try:
        check_payable(amount, app.currency, rt.settings.max_payment_amount)
    except MoneyError as exc:
        raise InvalidAmount(str(exc)) from None
    holding = await session.scalar(
        select(Holding).where(Holding.app_id == app.id, Holding.user_id == principal.user_id).with_for_update()
    )
    free = holding.shares - holding.reserved_shares if holding else 0
    if holding is None or free < body.shares:
        raise SharesUnavailable("You do not hold that many unreserved shares", shares_requested=body.shares,
                                shares_available=free)
    unlocks_at = holding.acquired_at + timedelta(days=app.lock_in_days)
    if utcnow() < unlocks_at:
        raise InvalidState("The shares are still in their lock-in period", unlock_date=unlocks_at.isoformat())
    await reserve_shares(session, app_id=app.id, user_id=principal.user_id, shares=body.shares)
    transfer = ShareTransfer(
        id=new_id("stf"), app_id=app.id, seller_id=principal.user_id, buyer_id=body.buyer_id, shares=body.shares,
        price_per_share=price, amount=amount, platform_fee=percentage_of(amount, app.platform_fee_hundredths),
        currency=app.currency, status="pending",
        expires_at=utcnow() + timedelta(seconds=rt.settings.share_transfer_expiry_seconds),
    )
    session.add(transfer)
    await session.flush()
    return transfer


async def get_transfer(session: AsyncSession, principal: Principal, transfer_id: str,
                       *, for_update: bool = False) -> ShareTransfer:
    stmt = select(ShareTransfer).where(ShareTransfer.id == transfer_id)
    if for_update:
        stmt = stmt.with_for_update()
    transfer = await session.scalar(stmt)
    if transfer is None or not (principal.is_admin or principal.user_id in (transfer.seller_id, transfer.buyer_id)):
        raise NotFound("Share transfer not found", share_transfer_id=transfer_id)
    return transfer


async def list_transfers(session: AsyncSession, principal: Principal, params: PageParams,
                         *, status: str | None, app_id: str | None) -> tuple[Sequence[ShareTransfer], str | None]:
    own = (ShareTransfer.seller_id, ShareTransfer.buyer_id)
    stmt = await readable_by(session, principal, select(ShareTransfer), own=own)
    stmt = where_given(stmt, {ShareTransfer.status: status, ShareTransfer.app_id: app_id})
    return await fetch_page(session, stmt, ShareTransfer.id, params)


async def cancel(session: AsyncSession, principal: Principal, transfer_id: str) -> ShareTransfer:
    transfer = await get_transfer(session, principal, transfer_id, for_update=True)
    if principal.user_id not in (transfer.seller_id, transfer.buyer_id):
        raise Unauthorized("Only the seller or the buyer cancels a transfer")
    await _end(session, transfer, "cancelled")
    return transfer


async def _end(session: AsyncSession, transfer: ShareTransfer, status: str) -> None:
    if transfer.status != "pending":
        raise InvalidState(f"The transfer is {transfer.status}", status=transfer.status)
    advance(transfer, ShareTransferStatus(status))
    await unreserve_shares(session, app_id=transfer.app_id, user_id=transfer.seller_id, shares=transfer.shares)


class ShareTransferPayment:
    """The buyer pays the transfer's amount; the server computes it."""

    name = "share_transfer"

    async def plan(self, session: AsyncSession, rt: Runtime, principal: Principal,
                   request: PaymentCreate) -> PaymentPlan:
        if not request.share_transfer_id:
            raise ValidationFailed("share_transfer_id is required")
        transfer = await get_transfer(session, principal, request.share_transfer_id)
        if transfer.buyer_id != principal.user_id:
            raise Unauthorized("Only the buyer pays for a share transfer")
        if transfer.app_id != request.app_id:
            raise ValidationFailed("app_id does not match the share transfer")
        if transfer.status != "pending" or transfer.expires_at <= utcnow():
            raise InvalidState("The share transfer can no longer be paid", status=transfer.status)
        if check_currency(rt.settings, request.currency) != transfer.currency:
            raise CurrencyNotSupported(f"This transfer is paid in {transfer.currency}", supported=[transfer.currency])
        if request.amount is not None and to_minor(request.amount, transfer.currency) != transfer.amount:
            raise InvalidAmount("The amount is the transfer's", expected_amount=to_major(transfer.amount,
                                                                                          transfer.currency))
        return PaymentPlan(amount=transfer.amount, currency=transfer.currency, app_id=transfer.app_id,
                           share_transfer_id=transfer.id, shares=transfer.shares)

    async def fulfil(self, session: AsyncSession, rt: Runtime, payments: Sequence[Payment]) -> None:
        for payment in payments:
            await self._fulfil_one(session, rt, payment)

    async def _fulfil_one(self, session: AsyncSession, rt: Runtime, payment: Payment) -> None:
        transfer = await session.scalar(
            select(ShareTransfer).where(ShareTransfer.id == payment.share_transfer_id).with_for_update()
        )
        if transfer is not None and transfer.status == "pending" and transfer.expires_at <= utcnow():
            await _end(session, transfer, "expired")  # paid after its time, before the expiry job saw it
        if transfer is None or transfer.status != "pending" or payment.amount != transfer.amount:
            state = transfer.status if transfer else "missing"
            payment.outcome_note = f"share transfer {state}; refunded"
            await queue_refund(session, payment, amount=payment.amount, source_account=accounts.gateway(
                payment.currency), return_account=accounts.payable(payment.user_id, payment.currency),
                reason=f"share transfer {state}")
            rt.notify_worker()
            return
        await _move_shares(session, transfer)
        advance(transfer, ShareTransferStatus.COMPLETED)
        transfer.payment_id = payment.id
        transfer.completed_at = utcnow()
        seller_receives = transfer.amount - transfer.platform_fee
        await queue_payout(session, user_id=transfer.seller_id, amount=seller_receives, currency=transfer.currency,
                           reason="share_sale", source_id=transfer.id)
        legs = [Leg(accounts.gateway(transfer.currency), -transfer.amount),
                Leg(accounts.payable(transfer.seller_id, transfer.currency), seller_receives)]
        if transfer.platform_fee:
            legs.append(Leg(accounts.platform_fees(transfer.currency), transfer.platform_fee))
        await post(session, kind="share_sale", legs=legs, idempotency_key=f"share_sale:{transfer.id}",
                   memo=f"share transfer {transfer.id}")
        await session.flush()
        emit(session, "share_transfer.completed", ShareTransferOut.model_validate(transfer),
             subjects=[transfer.seller_id, transfer.buyer_id])
        rt.notify_worker()


async def _move_shares(session: AsyncSession, transfer: ShareTransfer) -> None:
    moved = await session.execute(
        update(Holding)
        .where(Holding.app_id == transfer.app_id, Holding.user_id == transfer.seller_id,
               Holding.reserved_shares >= transfer.shares)
        .values(shares=Holding.shares - transfer.shares, reserved_shares=Holding.reserved_shares - transfer.shares,
                updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise InvalidState("The seller's reserved shares are gone")
    await credit_holding(session, app_id=transfer.app_id, user_id=transfer.buyer_id, shares=transfer.shares)
    now = utcnow()
    session.add(ShareMovement(app_id=transfer.app_id, from_user_id=transfer.seller_id, to_user_id=transfer.buyer_id,
                              shares=transfer.shares, kind="transfer", source_id=transfer.id, created_at=now))
