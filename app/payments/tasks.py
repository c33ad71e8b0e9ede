"""The worker's payment jobs: `charge.success` webhooks (verified with the gateway before anything is
credited), the reconciler of payments left pending, and refunds: sent at most once, checked against the
gateway's own records, and moved along by the `refund.*` webhooks (see `gateway_refunds` for their rules)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics, outbox
from app.gateway.errors import GatewayError, GatewayNotReached, GatewayRejected
from app.gateway.types import RefundResult
from app.models import Payment, Refund
from app.models.base import utcnow
from app.models.payments import REFERENCE_LENGTH
from app.models.statuses import PaymentStatus, advance
from app.payments.flows import verify_and_apply
from app.payments.gateway_refunds import (
    AT_GATEWAY,
    CHECKED,
    LIST_MARGIN,
    MAX_LIST_PAGES,
    _check_delay,
    _move,
    apply_gateway_status,
    merchant_note,
    refund_id_in_note,
    settle_refund,
)
from app.payments.service import (
    REFERENCE_PREFIX,
)
from app.runtime import Runtime
from app.webhooks.inbox import EventHandler, RetryLater, text_field

log = logging.getLogger(__name__)


async def handle_charge_success(rt: Runtime, data: dict[str, Any]) -> str:
    """Never trust the webhook body for money: look the charge up with the gateway first."""
    reference = text_field(data, "reference", max_length=REFERENCE_LENGTH) or ""
    if not reference.startswith(REFERENCE_PREFIX):
        return "ignored"  # not a charge this service started
    try:
        payment = await verify_and_apply(rt, reference)
    except GatewayRejected as error:
        if error.status_code == 404:
            return "ignored"
        raise RetryLater(f"gateway verify failed: {error.message}") from error
    except GatewayError as error:
        raise RetryLater(f"gateway verify failed: {error.message}") from error
    return "ignored" if payment is None else "processed"


async def reconcile_pending(rt: Runtime) -> int:
    """Ask the gateway about payments pending for a while; mark long-dead ones abandoned."""
    settings = rt.settings
    cutoff = utcnow() - timedelta(seconds=settings.reconcile_pending_after_seconds)
    abandon_before = utcnow() - timedelta(seconds=settings.abandon_pending_after_seconds)
    async with rt.db.unit_of_work() as session:
        stale = (
            await session.execute(
                select(Payment.reference, Payment.created_at)
                .where(Payment.status == "pending", Payment.flag_reason.is_(None), Payment.created_at <= cutoff)
                .order_by(Payment.created_at)
                .limit(200)
            )
        ).all()
    checked = 0
    for reference, created_at in stale:
        try:
            payment = await verify_and_apply(rt, reference)
        except GatewayError as error:
            log.warning("reconciler could not verify %s: %s", reference, error.message)
            continue
        checked += 1
        if payment is not None and payment.status == "pending" and created_at <= abandon_before:
            await _abandon(rt, reference)
    return checked


async def _abandon(rt: Runtime, reference: str) -> None:
    async with rt.db.unit_of_work() as session:
        payment = await session.scalar(select(Payment).where(Payment.reference == reference).with_for_update())
        if payment is not None and payment.status == "pending":
            advance(payment, PaymentStatus.ABANDONED)
            payment.outcome_note = "no payment within the abandonment window"
            metrics.PAYMENTS.labels(status="abandoned").inc()


# ---- refunds at the gateway ----------------------------------------------------------------------


RefundChange = Callable[[AsyncSession, Refund], Awaitable[bool]]


async def _in_transaction(rt: Runtime, refund_id: str, change: RefundChange) -> bool:
    """Apply `change` to the refund, locked, in a transaction of its own; True if it changed the refund."""
    async with rt.db.unit_of_work() as session:
        refund = await session.get(Refund, refund_id, with_for_update=True)
        assert refund is not None
        return await change(session, refund)


@dataclass(frozen=True)
class _Claimed:
    refund: Refund
    payment_reference: str
    gateway_transaction_id: int | None


async def _claim(rt: Runtime, statuses: tuple[str, ...], limit: int) -> list[_Claimed]:
    """Take up to `limit` due refunds in `statuses`; SKIP LOCKED lets several workers share them. A `pending`
    one becomes `sending`, leased to this worker for one call; any other is due again after a backoff."""
    lease = outbox.lease(rt.settings.worker_lease_seconds)
    async with rt.db.unit_of_work() as session:
        now = utcnow()
        waiting = (
            select(Refund, Payment.reference, Payment.gateway_transaction_id)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Refund.status.in_(statuses))
            .order_by(Refund.available_at, Refund.id)
        )
        rows = (await session.execute(outbox.due(waiting, Refund.available_at, now, limit=limit, of=Refund))).all()
        claimed = []
        for refund, reference, transaction_id in rows:
            refund.attempts += 1
            if refund.status == "pending":
                _move(refund, "sending")
                refund.sent_at = now
                refund.available_at = now + lease
            else:
                refund.available_at = now + _check_delay(rt, refund.attempts)
            claimed.append(_Claimed(refund, reference, transaction_id))
        return claimed


async def send_pending_refunds(rt: Runtime) -> int:
    """Send due `pending` refunds, one POST /refund each. Each is claimed (`sending`, committed) right before
    its call, so a lease covers one call. A rate limit, or no connection, ends the pass."""
    sent = 0
    for _ in range(rt.settings.worker_batch_size):
        claimed = await _claim(rt, ("pending",), 1)
        if not claimed:
            break
        sent += 1
        if not await _send(rt, claimed[0]):
            break
    return sent


async def _send(rt: Runtime, claimed: _Claimed) -> bool:
    """POST /refund, once, and what its answer means for the refund. False if Paystack could not take it
    (rate limited, or not reached): the next ones would fare no better now."""
    refund = claimed.refund
    try:
        result = await rt.gateway.create_refund(
            transaction=claimed.payment_reference, amount=refund.amount, currency=refund.currency,
            merchant_note=merchant_note(refund),
        )
    except GatewayRejected as error:
        await _in_transaction(rt, refund.id, partial(_refused, rt, error.message))
    except GatewayError as error:
        if isinstance(error, GatewayNotReached) or error.status_code == 429:
            log.warning("refund %s not sent (%s); it will be sent later", refund.id, error.message)
            await _in_transaction(rt, refund.id, partial(_send_later, rt, error))
            return False
        log.warning("refund %s outcome unknown (%s); the gateway will be asked", refund.id, error.message)
        await _in_transaction(rt, refund.id, partial(_outcome_unknown, rt, error.message))
    else:
        await _in_transaction(rt, refund.id, partial(_accepted, rt, result))
    return True


async def _accepted(rt: Runtime, result: RefundResult, session: AsyncSession, refund: Refund) -> bool:
    return await apply_gateway_status(session, rt, refund, result.status, gateway_refund_id=result.id)


async def _send_later(rt: Runtime, error: GatewayError, _: AsyncSession, refund: Refund) -> bool:
    """Paystack did not act on the call: the refund may be sent again, after a backoff."""
    if not _move(refund, "pending"):
        return False
    refund.last_error = error.message[:1000]
    wait = max(timedelta(seconds=error.retry_after or 0), _check_delay(rt, refund.attempts))
    refund.available_at = utcnow() + wait
    return True


async def _outcome_unknown(rt: Runtime, message: str, _: AsyncSession, refund: Refund) -> bool:
    if not _move(refund, "unknown"):
        return False
    refund.last_error = f"outcome unknown: {message}"[:1000]
    refund.available_at = utcnow()  # ask the gateway at once
    return True


async def check_refunds(rt: Runtime) -> int:
    """Settle refunds from the gateway's records: `sending` claims whose lease ran out become `unknown`;
    due `unknown` refunds are looked for in the charge's refund list, `sent` and `needs_attention` ones are
    fetched by id. Returns how many refunds changed status."""
    changed = await _end_expired_leases(rt)
    for claimed in await _claim(rt, CHECKED, rt.settings.worker_batch_size):
        changed += await _check(rt, claimed)
    return changed


async def _end_expired_leases(rt: Runtime) -> int:
    """A worker that claimed a refund and then died may have sent it: its outcome is unknown."""
    async with rt.db.unit_of_work() as session:
        now = utcnow()
        sending = select(Refund).where(Refund.status == "sending").order_by(Refund.id)
        expired = (
            await session.scalars(
                outbox.due(sending, Refund.available_at, now, limit=rt.settings.worker_batch_size)
            )
        ).all()
        for refund in expired:
            log.warning("refund %s: no answer recorded within the lease; the gateway will be asked", refund.id)
            await _outcome_unknown(rt, "the worker sending it stopped before recording the answer", session, refund)
        return len(expired)


@dataclass(frozen=True)
class _Search:
    found: RefundResult | None
    # True only when the gateway's whole list was read and nothing in it can be this refund
    surely_absent: bool


async def _check(rt: Runtime, claimed: _Claimed) -> int:
    refund = claimed.refund
    try:
        if refund.gateway_refund_id is not None:
            search = _Search(await rt.gateway.fetch_refund(refund.gateway_refund_id), surely_absent=False)
        else:
            search = await _find_at_gateway(rt, claimed)
    except GatewayError as error:
        log.warning("refund %s: the gateway could not be asked (%s)", refund.id, error.message)
        return 0
    if search.found is not None:
        return int(await _in_transaction(rt, refund.id, partial(_found, rt, search.found)))
    give_up_after = timedelta(seconds=rt.settings.refund_unknown_give_up_seconds)
    if refund.status != "unknown" or refund.sent_at is None or utcnow() - refund.sent_at < give_up_after:
        return 0
    if not search.surely_absent:
        log.error("refund %s: the gateway's list holds a refund of its amount that names none of ours, or is "
                  "too long to read; left unknown for an operator", refund.id)
        return 0
    note = "the gateway has no record of it"
    return int(await _in_transaction(rt, refund.id, partial(_gave_up, rt, note)))


async def _found(rt: Runtime, found: RefundResult, session: AsyncSession, refund: Refund) -> bool:
    return await apply_gateway_status(session, rt, refund, found.status, gateway_refund_id=found.id)


async def _refused(rt: Runtime, note: str, session: AsyncSession, refund: Refund) -> bool:
    return await settle_refund(session, rt, refund, "failed", note=note)


async def _gave_up(rt: Runtime, note: str, session: AsyncSession, refund: Refund) -> bool:
    # Only an unknown refund gives up: a webhook or an answer may have moved it meanwhile.
    return refund.status == "unknown" and await settle_refund(session, rt, refund, "failed", note=note)


async def _find_at_gateway(rt: Runtime, claimed: _Claimed) -> _Search:
    """Our refund among the charge's refunds at the gateway, by the id it carries in merchant_note. Its
    absence is sure only if the whole list was read and no refund of its amount in it names none of ours
    (one that does could be ours with its note lost)."""
    refund = claimed.refund
    charge = claimed.gateway_transaction_id or claimed.payment_reference
    since = (refund.sent_at or refund.created_at) - LIST_MARGIN
    unexplained = False
    for page in range(1, MAX_LIST_PAGES + 1):
        listing = await rt.gateway.list_refunds(transaction=charge, since=since, page=page)
        for item in listing.items:
            if item.transaction_id is not None and claimed.gateway_transaction_id is not None \
                    and item.transaction_id != claimed.gateway_transaction_id:
                continue  # another charge's: the filter was not applied
            owner = refund_id_in_note(item.merchant_note)
            if owner == refund.id:
                return _Search(item, surely_absent=False)
            unexplained |= owner is None and item.amount == refund.amount
        if not listing.has_more:
            return _Search(None, surely_absent=not unexplained)
    return _Search(None, surely_absent=False)


def _whole_number(value: object) -> int | None:
    """An integer that Paystack may send as a JSON number or as a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


async def _refunds_for_event(session: AsyncSession, data: dict[str, Any]) -> list[Refund]:
    """Our refunds an event can be about, locked: the one with its id when the body has one; else the ones
    of its charge and amount that the gateway may still be working on, oldest first."""
    gateway_id = _whole_number(data.get("id"))
    if gateway_id is not None:
        known = await session.scalar(select(Refund).where(Refund.gateway_refund_id == gateway_id).with_for_update())
        if known is not None:
            return [known]
    transaction = data.get("transaction")
    reference = data.get("transaction_reference") or (transaction.get("reference") if isinstance(transaction, dict)
                                                      else None)
    amount = _whole_number(data.get("amount"))
    if not isinstance(reference, str) or amount is None:
        return []
    query = (
        select(Refund)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.reference == reference, Refund.amount == amount, Refund.status.in_(AT_GATEWAY))
        .order_by(Refund.id)
        .with_for_update(of=Refund)
    )
    if gateway_id is not None:
        query = query.where(Refund.gateway_refund_id.is_(None))  # one with another id is another refund
    return list((await session.scalars(query)).all())


async def apply_refund_event(rt: Runtime, gateway_status: str, data: dict[str, Any]) -> str:
    async with rt.db.unit_of_work() as session:
        refunds = await _refunds_for_event(session, data)
        if not refunds:
            log.info("refund event (%s) for no refund of ours in progress: ignored", gateway_status)
            return "ignored"
        if len(refunds) > 1:
            # Refunds of the same amount on one charge, and the body names none of them: ask the gateway
            # about each (by id, or by merchant_note) instead of guessing which one this is.
            for refund in refunds:
                if refund.status != "sending":
                    refund.available_at = utcnow()
            rt.notify_worker()
            return "processed"
        changed = await apply_gateway_status(session, rt, refunds[0], gateway_status,
                                             gateway_refund_id=_whole_number(data.get("id")))
    return "processed" if changed else "ignored"


def _refund_event_handler(gateway_status: str) -> EventHandler:
    async def handle(rt: Runtime, data: dict[str, Any]) -> str:
        return await apply_refund_event(rt, gateway_status, data)

    return handle


# Event -> what applies it. The status is taken from the event's name, not from the body.


REFUND_EVENT_HANDLERS: Final[dict[str, EventHandler]] = {
    f"refund.{status}": _refund_event_handler(status)
    for status in ("pending", "processing", "needs-attention", "processed", "failed")
}
