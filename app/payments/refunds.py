"""Refunds through the gateway.

A refund is written first (row plus ledger entry `source -> refund:in_flight`)
in the transaction that decides it; a job sends it to the gateway after
commit; `refund.processed` settles it (`refund:in_flight -> gateway`) and
`refund.failed` returns the money to where the refund row says.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.gateway.errors import GatewayRejected, GatewayUnavailable
from app.ledger import accounts
from app.ledger.service import Entry, move, post, post_entries
from app.models import Payment, Refund
from app.models.base import new_id, utcnow
from app.payments.inbox import RetryLater, on_event
from app.runtime import Runtime

log = logging.getLogger(__name__)
MAX_SEND_ATTEMPTS = 8


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


async def _claim_due(rt: Runtime) -> list[tuple[Refund, str]]:
    lease = timedelta(seconds=rt.settings.worker_lease_seconds)
    async with rt.db.unit_of_work() as session:
        rows = (
            await session.execute(
                select(Refund, Payment.reference)
                .join(Payment, Payment.id == Refund.payment_id)
                .where(Refund.status == "pending", Refund.available_at <= utcnow())
                .order_by(Refund.id)
                .limit(rt.settings.worker_batch_size)
                .with_for_update(skip_locked=True, of=Refund)
            )
        ).all()
        for refund, _ in rows:
            refund.attempts += 1
            refund.available_at = utcnow() + lease
        return [(refund, reference) for refund, reference in rows]


async def send_pending_refunds(rt: Runtime) -> int:
    sent = 0
    for refund, reference in await _claim_due(rt):
        try:
            result = await rt.gateway.create_refund(
                transaction=reference, amount=refund.amount, currency=refund.currency,
                merchant_note=refund.reason[:200] or None,
            )
        except GatewayRejected as error:
            await _settle(rt, refund.id, "failed", note=error.message)
            continue
        except GatewayUnavailable as error:
            # Unknown outcome: try again later; Paystack refuses a refund beyond what is left.
            log.warning("refund %s not sent: %s", refund.id, error.message)
            await _retry_later(rt, refund.id, error.message)
            continue
        async with rt.db.unit_of_work() as session:
            row = await session.get(Refund, refund.id, with_for_update=True)
            assert row is not None
            if row.status == "pending":
                row.status = "processing"
                row.gateway_refund_id = result.id
                row.last_error = None
        sent += 1
    return sent


async def _retry_later(rt: Runtime, refund_id: str, message: str) -> None:
    async with rt.db.unit_of_work() as session:
        row = await session.get(Refund, refund_id, with_for_update=True)
        assert row is not None
        row.last_error = message[:1000]
        if row.attempts >= MAX_SEND_ATTEMPTS:
            row.status = "needs_attention"
        else:
            row.available_at = utcnow() + timedelta(seconds=min(2**row.attempts, 3600))


async def _settle(rt: Runtime, refund_id: str, outcome: str, note: str | None = None) -> None:
    async with rt.db.unit_of_work() as session:
        refund = await session.get(Refund, refund_id, with_for_update=True)
        assert refund is not None
        await settle_refund(session, refund, outcome, note)


async def settle_refund(session: AsyncSession, refund: Refund, outcome: str, note: str | None = None) -> None:
    """`processed` or `failed`: move the in-flight money on, once."""
    if refund.status in ("processed", "failed"):
        return
    payment = await session.get(Payment, refund.payment_id, with_for_update=True)
    assert payment is not None
    in_flight = accounts.refund_in_flight(refund.currency)
    if outcome == "processed":
        await post(session, kind="refund_settled", legs=move(in_flight, accounts.gateway(refund.currency),
                   refund.amount), idempotency_key=f"refund:{refund.id}:settled")
        refund.status = "processed"
        payment.refunded_amount += refund.amount
        payment.status = "refunded" if payment.refunded_amount >= payment.amount else "partially_refunded"
    else:
        await post(session, kind="refund_failed", legs=move(in_flight, refund.return_account, refund.amount),
                   idempotency_key=f"refund:{refund.id}:returned")
        refund.status = "failed"
        refund.last_error = (note or "refund failed at the gateway")[:1000]
    for hook in SETTLEMENT_HOOKS:
        await hook(session, refund)


# Domains that care about a refund's end (escrow deposits) register here.
SETTLEMENT_HOOKS: list[Callable[[AsyncSession, Refund], Awaitable[None]]] = []


async def _find_for_event(session: AsyncSession, data: dict[str, Any]) -> Refund | None:
    refund_id = data.get("id")
    if refund_id is not None:
        found = await session.scalar(select(Refund).where(Refund.gateway_refund_id == int(refund_id))
                                     .with_for_update())
        if found is not None:
            return found
    # The webhook can beat our own bookkeeping of the gateway's id: match on the charge instead.
    reference = data.get("transaction_reference") or (data.get("transaction") or {}).get("reference")
    if not reference:
        return None
    return await session.scalar(
        select(Refund)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.reference == reference, Refund.amount == int(data.get("amount") or 0),
               or_(Refund.status == "pending", Refund.status == "processing"))
        .order_by(Refund.id)
        .limit(1)
        .with_for_update(of=Refund)
    )


@on_event("refund.processed", "refund.failed")
async def handle_refund_outcome(rt: Runtime, data: dict[str, Any]) -> str:
    async with rt.db.unit_of_work() as session:
        refund = await _find_for_event(session, data)
        if refund is None:
            raise RetryLater("refund not known yet")
        if refund.status in ("processed", "failed"):
            return "duplicate"
        outcome = "processed" if data.get("status") == "processed" else "failed"
        await settle_refund(session, refund, outcome, note=str(data.get("status")))
    return "processed"
