"""The worker's payout jobs: claiming due payouts the gateway's balance covers and sending them as transfers
(one reference per payout, so a retry can never pay twice; single transfers while the gateway asks for an
OTP), transfer webhooks, and the reconciler that asks the gateway about payouts left processing or waiting
for their OTP."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from app.core import metrics, outbox
from app.gateway.errors import GatewayError, GatewayRejected
from app.gateway.types import BulkTransferItem, TransferResult
from app.ledger import accounts
from app.ledger.service import move, post
from app.models import Payout, PayoutAccount
from app.models.base import utcnow
from app.models.statuses import PAYOUT_IN_FLIGHT, PayoutStatus, advance
from app.payouts.service import SHOWN_STATUS, emit_payout, settle_payout
from app.runtime import Runtime
from app.webhooks.inbox import RetryLater

log = logging.getLogger(__name__)


# Payouts the worker sends when they are due: new ones, and those that waited for the gateway's balance.
_CLAIMABLE = (PayoutStatus.PENDING, PayoutStatus.AWAITING_FUNDS)
# Payouts not over yet, by the status answers show: the payouts_open gauge.
_OPEN = (PayoutStatus.PENDING, "awaiting_payout_account", PayoutStatus.AWAITING_FUNDS, PayoutStatus.PROCESSING,
         PayoutStatus.AWAITING_OTP, PayoutStatus.FAILED)


def _payable() -> Any:
    """Payouts that can go out, with the recipient of the payee's default account in their currency as it is
    now (a payout with none waits)."""
    return (
        select(Payout, PayoutAccount.recipient_code)
        .join(PayoutAccount, (PayoutAccount.user_id == Payout.user_id)
              & (PayoutAccount.currency == Payout.currency) & PayoutAccount.is_default)
        .where(Payout.status.in_(_CLAIMABLE))
        .order_by(Payout.id)
    )


async def _anything_due(rt: Runtime) -> bool:
    """Whether a payout is due (so the gateway's balance is worth reading), and the open-payouts gauge updated."""
    async with rt.db.unit_of_work() as session:
        due = await session.scalar(_payable().where(Payout.available_at <= utcnow()).limit(1))
        counted = dict((await session.execute(
            select(SHOWN_STATUS, func.count()).where(Payout.status.in_(_OPEN)).group_by(SHOWN_STATUS)
        )).all())
    for status in _OPEN:
        metrics.PAYOUTS_OPEN.labels(status=status).set(counted.get(status, 0))
    return due is not None


async def _claim_due(rt: Runtime, balances: dict[str, int]) -> list[Payout]:
    """Take due payouts and move their money in flight before the transfer is asked for.

    Each goes to the payee's default payout account in its currency as it is now (a payout written while
    the default was being changed would otherwise go to the old one); a payout with none waits. The
    account is locked with the payout, so that it cannot be deleted while its payout leaves. `balances` is
    what the gateway holds per currency, read just before: a payout it no longer covers waits as
    `awaiting_funds`, its money still payable (nothing moves in flight), and is tried again after
    `payout_funds_retry_seconds`."""
    lease = outbox.lease(rt.settings.worker_lease_seconds)
    remaining = dict(balances)
    async with rt.db.unit_of_work() as session:
        claimed = (
            await session.execute(
                outbox.due(_payable(), Payout.available_at, utcnow(), limit=rt.settings.worker_batch_size,
                           of=(Payout, PayoutAccount))
            )
        ).all()
        payouts = []
        for payout, current_recipient in claimed:
            payout.recipient_code = current_recipient
            available = remaining.get(payout.currency, 0)
            if available < payout.amount:
                advance(payout, PayoutStatus.AWAITING_FUNDS)
                payout.available_at = utcnow() + timedelta(seconds=rt.settings.payout_funds_retry_seconds)
                payout.last_error = f"the gateway's {payout.currency} balance does not cover this payout yet"
                continue
            remaining[payout.currency] = available - payout.amount
            payouts.append(payout)
            payout.attempts += 1
            advance(payout, PayoutStatus.PROCESSING)
            payout.available_at = utcnow() + lease
            payout.last_error = None
            await post(
                session,
                kind="payout_sent",
                legs=move(accounts.payable(payout.user_id, payout.currency),
                          accounts.payout_in_flight(payout.currency), payout.amount),
                idempotency_key=f"payout:{payout.id}:{payout.attempts}:sent",
                memo=f"payout {payout.reference}",
            )
        return payouts


async def send_pending_payouts(rt: Runtime) -> int:
    if not await _anything_due(rt):
        return 0
    # The balance is read before any money moves in flight: a payout it does not cover stays payable.
    try:
        balances = {balance.currency: balance.balance for balance in await rt.gateway.fetch_balance()}
    except GatewayError as error:
        log.warning("gateway balance not read (%s); due payouts wait for the next pass", error.message)
        return 0
    claimed = await _claim_due(rt, balances)
    # Distributions pay many people at once: Paystack bulk transfers, each item under its own reference.
    # Paystack takes bulk transfers only with transfer OTP off: once it asked for one, single transfers.
    bulk = not rt.transfer_otp_seen
    singles = [p for p in claimed if p.reason != "distribution" or not bulk]
    batchable: dict[str, list[Payout]] = {}
    for payout in claimed:
        if payout.reason == "distribution" and bulk:
            batchable.setdefault(payout.currency, []).append(payout)
    sent = 0
    for payout in singles:
        sent += await _send_one(rt, payout)
    size = rt.settings.bulk_transfer_batch_size
    for currency, payouts in batchable.items():
        for start in range(0, len(payouts), size):
            sent += await _send_batch(rt, currency, payouts[start:start + size])
    return sent


async def _send_one(rt: Runtime, payout: Payout) -> int:
    assert payout.recipient_code is not None
    try:
        result = await rt.gateway.initiate_transfer(
            amount=payout.amount, recipient=payout.recipient_code, reference=payout.reference,
            reason=f"{payout.reason} {payout.source_id}"[:100], currency=payout.currency,
        )
    except GatewayRejected as error:
        await _rejected(rt, payout, error)
        return 0
    except GatewayError as error:
        log.warning("payout %s outcome unknown (%s); the reconciler will ask", payout.reference, error.message)
        return 0
    await record_transfer_result(rt, result, payout.attempts)
    return 1


async def _send_batch(rt: Runtime, currency: str, payouts: list[Payout]) -> int:
    batch = f"batch-{secrets.token_hex(10)}"
    async with rt.db.unit_of_work() as session:
        await session.execute(
            update(Payout).where(Payout.id.in_([p.id for p in payouts])).values(batch_reference=batch)
        )
    items = [
        BulkTransferItem(amount=p.amount, reference=p.reference, recipient=p.recipient_code or "",
                         reason=f"{p.reason} {p.source_id}"[:100])
        for p in payouts
    ]
    try:
        results = await rt.gateway.bulk_transfer(currency=currency, transfers=items)
    except GatewayRejected as error:
        if "otp" in error.message.casefold():
            # Refused because transfer OTP is on (a refusal makes no transfer): each goes on its own.
            log.warning("bulk transfer %s refused while transfer OTP is on; sending single transfers", batch)
            rt.transfer_otp_seen = True
            for payout in payouts:
                await _rejected(rt, payout, error, send_alone=True)
            return len(payouts)
        for payout in payouts:
            await _rejected(rt, payout, error, note=f"bulk transfer {batch}: {error.message}")
        return 0
    except GatewayError as error:
        log.warning("bulk transfer %s outcome unknown (%s); the reconciler will ask", batch, error.message)
        return 0
    if len(results) < len(payouts):
        log.warning("bulk transfer %s: %d of %d transfers not told apart in the answer; the reconciler will ask",
                    batch, len(payouts) - len(results), len(payouts))
    attempts = {payout.reference: payout.attempts for payout in payouts}
    for result in results:
        await record_transfer_result(rt, result, attempts[result.reference])
    return len(payouts)


async def record_transfer_result(rt: Runtime, result: TransferResult, attempt: int) -> None:
    """What the gateway said about the payout's transfer while the payout was at `attempt`.

    `otp`: the gateway holds the transfer for an OTP, so the payout waits as `awaiting_otp` (its money stays
    in flight: the transfer exists); another status still in progress means the transfer went on."""
    if result.is_success or result.is_conclusive_failure:
        await _settle_by_reference(rt, result.reference, result.status, attempt=attempt)
        return
    if result.status == "otp":
        rt.transfer_otp_seen = True
    async with rt.db.unit_of_work() as session:
        payout = await session.scalar(
            select(Payout)
            .where(Payout.reference == result.reference, Payout.attempts == attempt,
                   Payout.status.in_(PAYOUT_IN_FLIGHT))
            .with_for_update()
        )
        if payout is None:
            return
        payout.transfer_code = result.transfer_code or payout.transfer_code
        if result.status is None:
            return  # the answer did not say: as it was
        target = PayoutStatus.AWAITING_OTP if result.status == "otp" else PayoutStatus.PROCESSING
        if payout.status != target:
            advance(payout, target)
            if target == PayoutStatus.AWAITING_OTP:
                await emit_payout(session, "payout.awaiting_otp", payout)


async def _settle_by_reference(rt: Runtime, reference: str, status: str, note: str | None = None, *,
                               attempt: int) -> bool:
    """Apply what the gateway said while the payout was at `attempt`. A payout that has moved on since
    (its transfer failed, and it was retried) ignores it: the answer may be about the earlier transfer,
    and the new one's outcome comes on its own."""
    async with rt.db.unit_of_work() as session:
        payout = await session.scalar(select(Payout).where(Payout.reference == reference).with_for_update())
        if payout is None:
            return False
        if payout.attempts != attempt:
            log.info("payout %s: an answer heard at attempt %d ignored, the payout is at attempt %d",
                     reference, attempt, payout.attempts)
            return False
        await settle_payout(session, payout, status, note)
        return True


async def handle_transfer_event(rt: Runtime, data: dict[str, Any]) -> str:
    reference = str(data.get("reference") or "")
    if not reference:
        return "ignored"
    async with rt.db.unit_of_work() as session:
        attempt = await session.scalar(select(Payout.attempts).where(Payout.reference == reference))
    if attempt is None:
        return "ignored"  # not a payout of ours
    # Never trust the body for the outcome: ask the gateway for the transfer's state.
    try:
        verified = await rt.gateway.verify_transfer(reference)
    except GatewayError as error:
        raise RetryLater(f"transfer verify failed: {error.message}") from error
    status = verified.status
    if not (verified.is_success or verified.is_conclusive_failure):
        raise RetryLater(f"transfer {reference} still {status}")
    return "processed" if await _settle_by_reference(rt, reference, status, attempt=attempt) else "ignored"


async def reconcile_payouts(rt: Runtime, older_than_seconds: float | None = None) -> int:
    """Ask the gateway about payouts whose outcome we do not know."""
    age = rt.settings.reconcile_pending_after_seconds if older_than_seconds is None else older_than_seconds
    cutoff = utcnow() - timedelta(seconds=age)
    async with rt.db.unit_of_work() as session:
        payouts = (
            await session.scalars(
                select(Payout).where(Payout.status.in_(PAYOUT_IN_FLIGHT),
                                 Payout.updated_at <= cutoff)
                .order_by(Payout.id).limit(200)
            )
        ).all()
    checked = 0
    for payout in payouts:
        try:
            result = await rt.gateway.verify_transfer(payout.reference)
        except GatewayRejected as error:
            if error.status_code == 404:
                await _send_one(rt, payout)  # never reached Paystack: same reference again
            continue
        except GatewayError as error:
            log.warning("payout %s not verified: %s", payout.reference, error.message)
            continue
        await record_transfer_result(rt, result, payout.attempts)
        checked += 1
    return checked


async def _rejected(rt: Runtime, payout: Payout, error: GatewayRejected, note: str | None = None, *,
                    send_alone: bool = False) -> None:
    """Paystack refused the transfer. That is a failure only if no transfer exists under the reference:
    a refusal can also mean "this reference is taken" when an earlier try of ours went through (the
    client retries a POST whose answer timed out), and that transfer may still succeed. `send_alone`: a
    refused bulk transfer whose payouts go as single transfers instead, under the same references."""
    try:
        existing = await rt.gateway.verify_transfer(payout.reference)
    except GatewayRejected as verify_error:
        if verify_error.status_code == 404:
            if send_alone:
                await _send_one(rt, payout)
                return
            # nothing was sent: the money is owed again
            await _settle_by_reference(rt, payout.reference, "failed", note or error.message, attempt=payout.attempts)
        return
    except GatewayError:
        return  # outcome unknown: stays processing for the reconciler
    await record_transfer_result(rt, existing, payout.attempts)
