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
gateway`), `failed` returns it; either happens once. The jobs that send and check refunds, and the `refund.*`
webhook handlers, are in `app/payments/tasks.py`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics, outbox
from app.core.errors import NotFound
from app.core.money import to_major
from app.core.security import Principal
from app.events.record import emit
from app.ledger import accounts
from app.ledger.service import Entry, move, post, post_entries
from app.models import EscrowTransaction, Payment, Refund
from app.models.base import new_id, utcnow
from app.models.statuses import PaymentStatus, RefundStatus, advance, allowed
from app.payments.schemas import PaymentRefundOut
from app.runtime import Runtime

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


def new_refund_row(
    payment: Payment,
    *,
    amount: int,
    source_account: str,
    return_account: str,
    reason: str,
    now: datetime,
    escrow_transaction_id: str | None = None,
    refund_id: str | None = None,
) -> tuple[dict[str, Any], Entry]:
    """A refund's row and its journal entry (`source -> refund:in_flight`), for the caller to write; a batch
    inserts many such rows at once, one refund is `Refund(**row)`."""
    row = {
        "id": refund_id or new_id("rfd"), "payment_id": payment.id, "escrow_transaction_id": escrow_transaction_id,
        "amount": amount, "currency": payment.currency, "status": "pending", "reason": reason[:500],
        "return_account": return_account, "attempts": 0, "available_at": now, "created_at": now, "updated_at": now,
    }
    entry = Entry(
        kind="refund",
        legs=move(source_account, accounts.refund_in_flight(payment.currency), amount),
        idempotency_key=f"refund:{row['id']}:out",
        memo=f"refund of {payment.reference}: {reason}",
    )
    return row, entry


async def queue_refund(
    session: AsyncSession,
    payment: Payment,
    *,
    amount: int,
    source_account: str,
    return_account: str,
    reason: str,
) -> Refund:
    row, entry = new_refund_row(payment, amount=amount, source_account=source_account,
                                return_account=return_account, reason=reason, now=utcnow())
    refund = Refund(**row)
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
    await session.flush()
    deposit = None if refund.escrow_transaction_id is None else await session.get(
        EscrowTransaction, refund.escrow_transaction_id)
    emit(session, f"refund.{outcome}", refund_out(refund, payment, deposit.deposit_id if deposit else None),
         subjects=[payment.user_id])
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


# ---- sending, once -------------------------------------------------------------------------------


# ---- asking the gateway --------------------------------------------------------------------------


# ---- webhooks ------------------------------------------------------------------------------------


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
    return refund_out(refund, payment, deposit_id)


def refund_out(refund: Refund, payment: Payment, deposit_id: str | None) -> PaymentRefundOut:
    """A refund as the API shows it (`deposit_id`: the deposit its escrow refund row came out of)."""
    return PaymentRefundOut(
        id=refund.id, transaction_id=deposit_id, escrow_transaction_id=refund.escrow_transaction_id,
        payment_reference=payment.reference, amount=to_major(refund.amount, refund.currency),
        currency=refund.currency, status=public_status(refund), created_at=refund.created_at,
        updated_at=refund.updated_at,
    )


def public_status(refund: Refund) -> str:
    """`sending` is `pending` until the gateway has answered; the other statuses are shown as they are."""
    return "pending" if refund.status == "sending" else refund.status
