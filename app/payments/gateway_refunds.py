"""Refunds through the gateway, sent at most once and settled from the gateway's own records.

A refund is written first (row plus ledger entry `source -> refund:in_flight`) in the transaction that
decides it. A job claims it (`pending -> sending`, committed before the call) and sends `POST /refund`
once, with the refund's id in `merchant_note` so that the gateway's records can be searched for it:

- accepted: `sent`, with the gateway's refund id;
- refused (4xx): `failed`, and the money goes back to the refund's return account;
- rate limited after the client's own retries, or no connection at all: `pending` again after a
  backoff (Paystack did not act on it);
- anything else (timeout, transport error, 5xx, an answer off the contract), or a `sending` claim whose
  lease ran out (the worker died mid-call): `unknown`.

Paystack takes no idempotency key for refunds, so a refund is never sent twice. An `unknown` refund is
settled by asking the gateway: the check job lists the charge's refunds and finds ours by the id in
`merchant_note`; if the gateway still has no record of it `REFUND_UNKNOWN_GIVE_UP_SECONDS` after it was
sent, it failed. `sent` and `needs_attention` refunds that no webhook settled are fetched by id. The
`refund.*` webhooks move refunds along too. `processed` moves the money on (`refund:in_flight ->
gateway`), `failed` returns it; either happens once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics, outbox
from app.core.errors import NotFound
from app.core.money import to_major
from app.core.security import Principal
from app.gateway.errors import GatewayError, GatewayNotReached, GatewayRejected
from app.gateway.types import RefundResult
from app.ledger import accounts
from app.ledger.service import Entry, move, post, post_entries
from app.models import EscrowTransaction, Payment, Refund
from app.models.base import new_id, utcnow
from app.models.statuses import PaymentStatus, RefundStatus, advance, allowed
from app.payments.schemas import PaymentRefundOut
from app.runtime import Runtime
from app.webhooks.inbox import EventHandler

log = logging.getLogger(__name__)

# The moves a refund may make are RefundStatus's table in app/models/statuses.py.
SETTLED: Final = frozenset({"processed", "failed"})
# The gateway may hold these: webhooks can be about them.
AT_GATEWAY: Final = ("sending", "sent", "unknown", "needs_attention")
# Asked about by the check job: `sending` is not (its worker is still waiting for the answer).
CHECKED: Final = ("sent", "unknown", "needs_attention")
# Paystack's refund statuses -> ours; any other status it may report means it has the refund.
FROM_GATEWAY: Final = {"processed": "processed", "failed": "failed", "needs-attention": "needs_attention"}
MAX_CHECK_INTERVAL: Final = timedelta(hours=1)
# A list filter that Paystack would ignore still ends: at most this many pages of a charge's refunds
# (a list longer than that never lets a refund count as absent).
MAX_LIST_PAGES: Final = 20
# How far before the send a refund of ours can appear in the gateway's list (clock skew, and then some).
LIST_MARGIN: Final = timedelta(days=1)
# Our refund ids as they appear in a merchant_note (see app.models.base.new_id).
_REFUND_ID_IN_NOTE = re.compile(r"\brfd_[0-9a-f]{28}\b")


def new_refund(
    payment: Payment,
    *,
    amount: int,
    source_account: str,
    return_account: str,
    reason: str,
    escrow_transaction_id: str | None = None,
    refund_id: str | None = None,
) -> tuple[Refund, Entry]:
    """A refund row and its journal entry (`source -> refund:in_flight`), for the caller to write."""
    refund = Refund(
        id=refund_id or new_id("rfd"),
        payment_id=payment.id,
        escrow_transaction_id=escrow_transaction_id,
        amount=amount,
        currency=payment.currency,
        status="pending",
        reason=reason[:500],
        return_account=return_account,
        attempts=0,
        available_at=utcnow(),
    )
    entry = Entry(
        kind="refund",
        legs=move(source_account, accounts.refund_in_flight(payment.currency), amount),
        idempotency_key=f"refund:{refund.id}:out",
        memo=f"refund of {payment.reference}: {reason}",
    )
    return refund, entry


async def queue_refund(
    session: AsyncSession,
    payment: Payment,
    *,
    amount: int,
    source_account: str,
    return_account: str,
    reason: str,
) -> Refund:
    refund, entry = new_refund(payment, amount=amount, source_account=source_account, return_account=return_account,
                               reason=reason)
    session.add(refund)
    await post_entries(session, [entry])
    return refund


def merchant_note(refund: Refund) -> str:
    """What POST /refund carries as merchant_note: our id first, so the gateway's records can be searched."""
    return f"{refund.id} {refund.reason}".strip()[:200]


def refund_id_in_note(note: str | None) -> str | None:
    found = _REFUND_ID_IN_NOTE.search(note or "")
    return found.group(0) if found else None


def _move(refund: Refund, status: str) -> bool:
    """Move `refund` to `status` if its transition table allows it; False (and no change) otherwise."""
    if not allowed(RefundStatus(refund.status), RefundStatus(status)):
        return False
    refund.status = status
    metrics.REFUNDS.labels(status=status).inc()
    return True


def _check_delay(rt: Runtime, attempts: int) -> timedelta:
    """The wait before the worker takes a refund again: doubling from REFUND_CHECK_INTERVAL_SECONDS, up to an hour."""
    return outbox.backoff(attempts, first=rt.settings.refund_check_interval_seconds,
                          most=MAX_CHECK_INTERVAL.total_seconds())


# ---- settling ------------------------------------------------------------------------------------


async def settle_refund(
    session: AsyncSession, rt: Runtime, refund: Refund, outcome: str, note: str | None = None
) -> bool:
    """`processed` or `failed`: move the in-flight money on, once. False if it was settled already."""
    if not _move(refund, outcome):
        return False
    payment = await session.get(Payment, refund.payment_id, with_for_update=True)
    assert payment is not None
    in_flight = accounts.refund_in_flight(refund.currency)
    if outcome == "processed":
        await post(session, kind="refund_settled", legs=move(in_flight, accounts.gateway(refund.currency),
                   refund.amount), idempotency_key=f"refund:{refund.id}:settled")
        payment.refunded_amount += refund.amount
        advance(payment, PaymentStatus.REFUNDED if payment.refunded_amount >= payment.amount
                else PaymentStatus.PARTIALLY_REFUNDED)
        refund.last_error = None
    else:
        await post(session, kind="refund_failed", legs=move(in_flight, refund.return_account, refund.amount),
                   idempotency_key=f"refund:{refund.id}:returned")
        refund.last_error = (note or "refund failed at the gateway")[:1000]
    for hook in rt.extension(RefundSettledHooks).hooks:
        await hook(session, refund)
    return True


@dataclass(frozen=True)
class RefundSettledHooks:
    """What the domains above (escrow deposits) do, in the same transaction, when a refund ends."""

    hooks: Sequence[Callable[[AsyncSession, Refund], Awaitable[None]]]


async def apply_gateway_status(
    session: AsyncSession, rt: Runtime, refund: Refund, gateway_status: str, *, gateway_refund_id: int | None
) -> bool:
    """What the gateway says about one of our refunds (its status, maybe its id), applied once.
    True if the refund's status changed."""
    if gateway_refund_id is not None and refund.gateway_refund_id is None:
        refund.gateway_refund_id = gateway_refund_id
    target = FROM_GATEWAY.get(gateway_status, "sent")
    if target in SETTLED:
        return await settle_refund(session, rt, refund, target, note=f"the gateway reports the refund {gateway_status}")
    if not _move(refund, target):
        return False
    refund.last_error = None
    # a webhook normally settles it; the worker asks the gateway if none has after a while
    refund.available_at = utcnow() + _check_delay(rt, 1)
    return True


RefundChange = Callable[[AsyncSession, Refund], Awaitable[bool]]


async def _in_transaction(rt: Runtime, refund_id: str, change: RefundChange) -> bool:
    """Apply `change` to the refund, locked, in a transaction of its own; True if it changed the refund."""
    async with rt.db.unit_of_work() as session:
        refund = await session.get(Refund, refund_id, with_for_update=True)
        assert refund is not None
        return await change(session, refund)


# ---- sending, once -------------------------------------------------------------------------------


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


# ---- asking the gateway --------------------------------------------------------------------------


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


# ---- webhooks ------------------------------------------------------------------------------------


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


# ---- reading -------------------------------------------------------------------------------------


async def get_refund(session: AsyncSession, principal: Principal, refund_id: str) -> PaymentRefundOut:
    """An admin sees any refund, the payer their own; anyone else is told it does not exist."""
    row = (
        await session.execute(
            select(Refund, Payment, EscrowTransaction.deposit_id)
            .join(Payment, Payment.id == Refund.payment_id)
            .outerjoin(EscrowTransaction, EscrowTransaction.id == Refund.escrow_transaction_id)
            .where(Refund.id == refund_id)
        )
    ).first()
    if row is None or not (principal.is_admin or row[1].user_id == principal.user_id):
        raise NotFound("Refund not found", refund_id=refund_id)
    refund, payment, deposit_id = row
    return PaymentRefundOut(
        id=refund.id, transaction_id=deposit_id, escrow_transaction_id=refund.escrow_transaction_id,
        payment_reference=payment.reference, amount=to_major(refund.amount, refund.currency),
        currency=refund.currency, status=public_status(refund), created_at=refund.created_at,
        updated_at=refund.updated_at,
    )


def public_status(refund: Refund) -> str:
    """`sending` is `pending` until the gateway has answered; the other statuses are shown as they are."""
    return "pending" if refund.status == "sending" else refund.status
