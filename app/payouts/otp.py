"""Payouts whose transfer Paystack holds for an OTP (`awaiting_otp`): an admin finalizes the transfer with the
OTP Paystack sent to the business, or has it sent again. A finalize is claimed in the database before the
gateway is called, so of finalizes at the same time only one reaches it; the OTP is neither stored nor logged."""

from __future__ import annotations

from sqlalchemy import select

from app.core.errors import InvalidOtp, InvalidState, NotFound
from app.core.security import Principal
from app.gateway.errors import GatewayError, GatewayRejected
from app.models import Payout, audit
from app.models.statuses import PayoutStatus, advance
from app.payouts.tasks import record_transfer_result
from app.runtime import Runtime


async def finalize_payout(rt: Runtime, principal: Principal, payout_id: str, otp: str) -> Payout:
    """Send `otp` to finalize the payout's transfer; the payout as it stands after the gateway's answer.

    InvalidOtp when the gateway refuses it (the payout still awaits its OTP). On an answer that does not say
    what happened, the gateway is asked (verify): the payout follows what it says, and the error is raised when
    the transfer still waits for its OTP or nobody knows yet (the reconciler asks again later)."""
    async with rt.db.unit_of_work() as session:
        payout = await session.scalar(select(Payout).where(Payout.id == payout_id).with_for_update())
        if payout is None:
            raise NotFound("Payout not found", payout_id=payout_id)
        if payout.status != PayoutStatus.AWAITING_OTP or payout.transfer_code is None:
            raise InvalidState("Only a payout awaiting its OTP can be finalized", status=payout.status)
        # The claim: a finalize arriving meanwhile finds the payout `processing` and is refused.
        advance(payout, PayoutStatus.PROCESSING)
        # The attempt is what the admin did; whether the gateway took the OTP shows in the payout's status.
        audit.record(session, principal, "payout.finalize_attempted", "payout", payout.id, {
            "status": {"before": PayoutStatus.AWAITING_OTP, "after": payout.status},
            "amount": payout.amount, "currency": payout.currency})
        reference, transfer_code, attempt = payout.reference, payout.transfer_code, payout.attempts
    try:
        result = await rt.gateway.finalize_transfer(transfer_code=transfer_code, otp=otp, reference=reference)
    except GatewayRejected as error:
        # A refusal changed nothing at the gateway; where the transfer stands decides the answer (one finalized
        # some other way, in Paystack's dashboard, goes on).
        payout, _ = await _where_it_stands(rt, payout_id, reference, attempt, refused=True)
        if payout.status == PayoutStatus.AWAITING_OTP and not error.refuses_our_credentials:
            raise InvalidOtp("The gateway refused the OTP", payout_id=payout_id, status=payout.status,
                             gateway_message=error.message) from error
        if payout.status == PayoutStatus.AWAITING_OTP:
            raise  # our credentials were refused: a gateway error, not the caller's mistake
        return payout
    except GatewayError:
        payout, known = await _where_it_stands(rt, payout_id, reference, attempt, refused=False)
        if not known or payout.status == PayoutStatus.AWAITING_OTP:
            raise
        return payout
    await record_transfer_result(rt, result, attempt)
    return await _payout(rt, payout_id)


async def resend_payout_otp(rt: Runtime, payout_id: str) -> Payout:
    """Ask the gateway to send the OTP of the payout's transfer again; the payout. Nothing changes here: a
    repeat sends another message, so concurrent calls need no claim."""
    payout = await _payout(rt, payout_id)
    if payout.status != PayoutStatus.AWAITING_OTP or payout.transfer_code is None:
        raise InvalidState("Only a payout awaiting its OTP can have it sent again", status=payout.status)
    try:
        await rt.gateway.resend_transfer_otp(transfer_code=payout.transfer_code)
    except GatewayRejected:
        # Perhaps the transfer no longer waits for an OTP: then the payout follows it and the caller is told.
        payout, _ = await _where_it_stands(rt, payout_id, payout.reference, payout.attempts, refused=True)
        if payout.status != PayoutStatus.AWAITING_OTP:
            raise InvalidState("The payout no longer awaits an OTP", status=payout.status) from None
        raise
    return payout


async def _where_it_stands(
    rt: Runtime, payout_id: str, reference: str, attempt: int, *, refused: bool
) -> tuple[Payout, bool]:
    """Ask the gateway about the transfer and record it; the payout, and whether the gateway said. If it cannot
    say, a refused call left the transfer waiting for its OTP; after any other failure the payout stays
    `processing` for the reconciler."""
    try:
        result = await rt.gateway.verify_transfer(reference)
    except GatewayError:
        if refused:
            await _back_to_awaiting_otp(rt, reference, attempt)
        return await _payout(rt, payout_id), refused
    await record_transfer_result(rt, result, attempt)
    return await _payout(rt, payout_id), True


async def _back_to_awaiting_otp(rt: Runtime, reference: str, attempt: int) -> None:
    async with rt.db.unit_of_work() as session:
        payout = await session.scalar(
            select(Payout)
            .where(Payout.reference == reference, Payout.attempts == attempt, Payout.status == PayoutStatus.PROCESSING)
            .with_for_update()
        )
        if payout is not None:
            advance(payout, PayoutStatus.AWAITING_OTP)


async def _payout(rt: Runtime, payout_id: str) -> Payout:
    async with rt.db.unit_of_work() as session:
        payout = await session.get(Payout, payout_id)
    if payout is None:
        raise NotFound("Payout not found", payout_id=payout_id)
    return payout
