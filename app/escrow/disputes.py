"""Disputes: an investor (or a chargeback) freezes money of one deposit until an admin resolves it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import oversees
from app.apps.service import get_app, readable_by
from app.core.config import Settings
from app.core.errors import FeatureDisabled, InsufficientFunds, InvalidAmount, InvalidState, NotFound, Unauthorized
from app.core.money import MoneyError, to_major, to_minor
from app.core.repository import get_or_404
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.escrow.deposits import available, deposit_status, lock_deposits
from app.escrow.refunds import refund_deposit
from app.escrow.releases import pay_owner_from_deposits
from app.escrow.schemas import DisputeIn, DisputeOut, DisputeResolve
from app.events.record import emit
from app.ledger import accounts
from app.ledger.service import move, post
from app.models import App, Dispute, EscrowTransaction, Payment, audit
from app.models.base import new_id, utcnow
from app.models.statuses import DisputeStatus, PaymentStatus, advance
from app.runtime import Runtime
from app.shares.service import cancel_reserved_shares, reserve_shares

log = logging.getLogger(__name__)


def require_enabled(settings: Settings) -> None:
    if not settings.enable_dispute_resolution:
        raise FeatureDisabled("Dispute resolution is turned off", feature="ENABLE_DISPUTE_RESOLUTION")


def _minor(value: Any, currency: str) -> int:
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise InvalidAmount(str(exc)) from None


async def open_dispute(session: AsyncSession, rt: Runtime, principal: Principal, body: DisputeIn) -> Dispute:
    require_enabled(rt.settings)
    deposit = await session.scalar(
        select(EscrowTransaction).where(EscrowTransaction.id == body.transaction_id,
                                        EscrowTransaction.type == "deposit")
    )
    if deposit is None:
        raise NotFound("Deposit not found", transaction_id=body.transaction_id)
    if deposit.investor_id != principal.user_id:
        app = await get_app(session, deposit.app_id)
        if oversees(app, principal):
            raise Unauthorized("Only the deposit's investor opens a dispute on it")
        raise NotFound("Deposit not found", transaction_id=body.transaction_id)
    deposit = (await lock_deposits(session, [deposit.id]))[deposit.id]
    amount = available(deposit) if body.amount is None else _minor(body.amount, deposit.currency)
    return await _freeze(session, deposit, amount, reason=body.reason, source="investor")


async def _freeze(session: AsyncSession, deposit: EscrowTransaction, amount: int, *, reason: str, source: str,
                  gateway_dispute_id: str | None = None) -> Dispute:
    if amount <= 0 or amount > available(deposit):
        raise InsufficientFunds("The deposit does not hold that much unfrozen money", transaction_id=deposit.id,
                                available=to_major(available(deposit), deposit.currency))
    deposit.frozen += amount
    dispute = Dispute(
        id=new_id("dsp"), transaction_id=deposit.id, app_id=deposit.app_id, investor_id=deposit.investor_id,
        amount=amount, currency=deposit.currency, reason=reason, status="open", source=source,
        gateway_dispute_id=gateway_dispute_id,
    )
    session.add(dispute)
    await session.flush()
    await emit_dispute(session, "dispute.opened", dispute)
    return dispute


async def emit_dispute(session: AsyncSession, event_type: str, dispute: Dispute) -> None:
    """A dispute event, about the investor and the app's owner."""
    app = await session.get(App, dispute.app_id)
    emit(session, event_type, DisputeOut.model_validate(dispute),
         subjects=[dispute.investor_id, app.owner_id if app else None])


async def get_dispute(session: AsyncSession, principal: Principal, dispute_id: str,
                      *, for_update: bool = False) -> Dispute:
    dispute = await get_or_404(session, Dispute, dispute_id, for_update=for_update)
    if principal.is_admin or dispute.investor_id == principal.user_id:
        return dispute
    if oversees(await get_app(session, dispute.app_id), principal):
        return dispute
    raise NotFound("Dispute not found", dispute_id=dispute_id)


async def list_disputes(session: AsyncSession, principal: Principal, params: PageParams,
                        *, status: str | None, app_id: str | None) -> tuple[Sequence[Dispute], str | None]:
    stmt = await readable_by(session, principal, select(Dispute), own=(Dispute.investor_id,), app=Dispute.app_id)
    stmt = where_given(stmt, {Dispute.status: status, Dispute.app_id: app_id})
    return await fetch_page(session, stmt, Dispute.id, params)


async def resolve_dispute(session: AsyncSession, rt: Runtime, principal: Principal, dispute_id: str,
                          body: DisputeResolve) -> Dispute:
    require_enabled(rt.settings)
    dispute = await get_dispute(session, principal, dispute_id, for_update=True)
    if not principal.is_admin:
        raise Unauthorized("Only an admin resolves disputes")
    if dispute.status != "open":
        raise InvalidState("This dispute is already resolved", status=dispute.status)
    if dispute.source == "gateway" and body.outcome in ("refund", "partial_refund"):
        # The bank returns a chargeback's money itself; refunding it here too would pay the investor twice.
        raise InvalidState("A chargeback's money is returned by the bank, not refunded here", source="gateway")
    if body.outcome == "chargeback" and dispute.source != "gateway":
        raise InvalidState("Only a chargeback's money goes back through the bank", source=dispute.source)
    if body.outcome == "partial_refund" and body.amount is None:
        raise InvalidAmount("A partial refund needs an amount")
    amount = dispute.amount
    if body.outcome in ("partial_refund", "chargeback") and body.amount is not None:
        amount = _minor(body.amount, dispute.currency)
        if not 0 < amount <= dispute.amount:
            raise InvalidAmount("The amount must be more than zero and at most the disputed amount",
                                disputed=to_major(dispute.amount, dispute.currency))
    deposit = await _unfreeze(session, dispute)
    if body.outcome in ("refund", "partial_refund"):
        await refund_deposit(session, rt, dispute.transaction_id, amount=amount,
                             reason=f"dispute {dispute.id}: {body.note or body.outcome}")
    elif body.outcome == "release":
        app = await get_app(session, dispute.app_id)
        await pay_owner_from_deposits(session, rt, app, dispute.currency, [(dispute.transaction_id, amount)],
                                      source_id=dispute.id, milestone_id=None)
    elif body.outcome == "chargeback":
        await _charge_back(session, dispute, deposit, amount)
    await _close(session, dispute, body.outcome, amount if body.outcome != "dismiss" else 0, body.note,
                 principal.user_id)
    audit.record(session, principal, "dispute.resolved", "dispute", dispute.id, {
        "app_id": dispute.app_id, "transaction_id": dispute.transaction_id, "outcome": body.outcome,
        "amount": amount if body.outcome != "dismiss" else 0, "currency": dispute.currency, "note": body.note,
    })
    return dispute


async def _unfreeze(session: AsyncSession, dispute: Dispute) -> EscrowTransaction:
    deposit = (await lock_deposits(session, [dispute.transaction_id]))[dispute.transaction_id]
    deposit.frozen -= dispute.amount
    # Written now: the refund or release that follows re-locks the deposit with populate_existing,
    # which (autoflush is off) would otherwise reload it still frozen.
    await session.flush()
    return deposit


async def _close(session: AsyncSession, dispute: Dispute, outcome: str, amount: int, note: str | None,
                 by: str) -> None:
    advance(dispute, DisputeStatus.RESOLVED)
    dispute.outcome = outcome
    dispute.outcome_amount = amount
    dispute.resolution_note = note
    dispute.resolved_by = by
    dispute.resolved_at = utcnow()
    await emit_dispute(session, "dispute.resolved", dispute)


ACCEPTED_RESOLUTIONS = frozenset({"merchant-accepted", "auto-accepted"})
DECLINED_RESOLUTIONS = frozenset({"declined"})
# The disputed charge's status each verdict can leave (a partly accepted chargeback may leave the charge
# `success`); any other status contradicts the resolution.
CHARGE_STATUSES_AFTER = {"lost": frozenset({"reversed", "success"}), "won": frozenset({"success"})}


class UnclearResolution(Exception):
    """A chargeback resolution the service cannot act on safely."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(reason)
        self.label = label  # a bounded metric label


async def _charge_back(session: AsyncSession, dispute: Dispute, deposit: EscrowTransaction, amount: int) -> None:
    """The bank took `amount` of the disputed deposit back through the gateway: it leaves escrow for good."""
    await post(session, kind="chargeback",
               legs=move(accounts.escrow(dispute.app_id, dispute.currency), accounts.gateway(dispute.currency),
                         amount),
               idempotency_key=f"chargeback:{dispute.id}", memo=f"chargeback {dispute.gateway_dispute_id}")
    deposit.refunded += amount
    deposit.status = deposit_status(deposit)
    session.add(EscrowTransaction(
        id=new_id("esc"), type="refund", app_id=deposit.app_id, investor_id=deposit.investor_id,
        amount=amount, currency=deposit.currency, status="processed",
        gateway_reference=deposit.gateway_reference, deposit_id=deposit.id,
        shares=0, released=0, refunded=0, frozen=0,
    ))
    if deposit.released == 0 and deposit.refunded == deposit.amount and deposit.shares:
        await _cancel_charged_back_shares(session, deposit)
    payment = await session.get(Payment, deposit.payment_id, with_for_update=True)
    if payment is not None:
        payment.refunded_amount += amount
        advance(payment, PaymentStatus.REFUNDED if payment.refunded_amount >= payment.amount
                else PaymentStatus.PARTIALLY_REFUNDED)


async def _cancel_charged_back_shares(session: AsyncSession, deposit: EscrowTransaction) -> None:
    """The whole investment went back through the bank: its shares go too, if the investor still has them."""
    try:
        async with session.begin_nested():
            await reserve_shares(session, app_id=deposit.app_id, user_id=deposit.investor_id, shares=deposit.shares)
            await cancel_reserved_shares(session, app_id=deposit.app_id, user_id=deposit.investor_id,
                                         shares=deposit.shares, source_id=deposit.id)
    except InvalidState:
        log.error("chargeback on %s: the investor no longer holds the %s shares to cancel", deposit.id,
                  deposit.shares)
