"""Payouts: money owed to people, sent as Paystack transfers.

A payout row is written in the same transaction as the ledger entry that
makes the money owed (`... -> payable:user`). A job sends it after commit:
`payable -> payout:in_flight`, then the transfer. `transfer.success` settles
it (`payout:in_flight -> gateway`); a conclusive failure returns the money
(`payout:in_flight -> payable`), and so does a reversal of a paid transfer
(`gateway -> payable`). A timeout, a 5xx or an answer we cannot read leaves it
`processing` for the reconciler. The reference never changes, so a retry can
never pay twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.errors import InvalidState, NotFound, ValidationFailed
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.events.record import emit
from app.gateway.types import TRANSFER_CONCLUSIVE_FAILURES
from app.ledger import accounts
from app.ledger.service import move, post
from app.models import Payout, PayoutAccount, audit
from app.models.base import new_id, utcnow
from app.models.statuses import PayoutStatus, advance
from app.payouts.schemas import PayoutOut

RECIPIENT_TYPES = {"NGN": "nuban", "GHS": "ghipss", "ZAR": "basa", "KES": "mobile_money", "USD": "nuban"}
# Refusals about our credentials or integration, not the bank details: they stay gateway errors.
_OUR_OWN_REFUSALS = frozenset({401, 403})


def new_payout_reference() -> str:
    """Paystack transfer references: 16-50 characters of a-z, 0-9, '-' and '_'."""
    return new_payout_references(1)[0]


def new_payout_references(count: int) -> list[str]:
    random = secrets.token_hex(12 * count)
    return ["payout-" + random[i:i + 24] for i in range(0, 24 * count, 24)]


async def payout_recipients(session: AsyncSession, user_ids: Iterable[str], currency: str) -> dict[str, str]:
    """user_id -> transfer recipient, for those of `user_ids` with a payout account in `currency`."""
    rows = await session.execute(
        select(PayoutAccount.user_id, PayoutAccount.recipient_code)
        .where(PayoutAccount.user_id.in_(set(user_ids)), PayoutAccount.currency == currency)
    )
    return {user_id: code for user_id, code in rows.all()}


def new_payout(
    *, user_id: str, amount: int, currency: str, reason: str, source_id: str, recipient_code: str | None
) -> Payout:
    """A payout owed to `user_id`; it goes out once there is a `recipient_code` (a payout account)."""
    return Payout(
        id=new_id("po"), user_id=user_id, amount=amount, currency=currency, status="pending",
        reference=new_payout_reference(), reason=reason, source_id=source_id, recipient_code=recipient_code,
        attempts=0, available_at=utcnow(),
    )


async def queue_payout(
    session: AsyncSession, *, user_id: str, amount: int, currency: str, reason: str, source_id: str
) -> Payout:
    """Owe `amount` to `user_id` as a payout; it goes out once they have a payout account."""
    recipients = await payout_recipients(session, [user_id], currency)
    payout = new_payout(user_id=user_id, amount=amount, currency=currency, reason=reason, source_id=source_id,
                        recipient_code=recipients.get(user_id))
    session.add(payout)
    return payout


# ---- payout accounts ---------------------------------------------------------------------------


async def get_payout_account(session: AsyncSession, principal: Principal) -> PayoutAccount:
    account = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == principal.user_id))
    if account is None:
        raise NotFound("No payout account registered")
    return account


# ---- sending -----------------------------------------------------------------------------------


async def settle_payout(session: AsyncSession, payout: Payout, gateway_status: str, note: str | None = None) -> None:
    """Apply a conclusive transfer status once; anything else leaves the payout as it is.

    A paid transfer can still come back (the receiving bank sends it back: `reversed`, with
    `transferred_at` set): the payee is owed the money again.
    """
    if payout.status == "paid" and gateway_status == "reversed":
        await _reverse_paid(session, payout, note)
        return
    if payout.status not in (PayoutStatus.PROCESSING, PayoutStatus.AWAITING_OTP):
        return
    in_flight = accounts.payout_in_flight(payout.currency)
    if gateway_status == "success":
        await post(session, kind="payout_paid", legs=move(in_flight, accounts.gateway(payout.currency), payout.amount),
                   idempotency_key=f"payout:{payout.id}:{payout.attempts}:paid")
        advance(payout, PayoutStatus.PAID)
        payout.paid_at = utcnow()
        metrics.PAYOUTS.labels(status="paid").inc()
        await emit_payout(session, "payout.paid", payout)
    elif gateway_status in TRANSFER_CONCLUSIVE_FAILURES:
        await post(session, kind="payout_returned",
                   legs=move(in_flight, accounts.payable(payout.user_id, payout.currency), payout.amount),
                   idempotency_key=f"payout:{payout.id}:{payout.attempts}:returned")
        advance(payout, PayoutStatus.REVERSED if gateway_status == "reversed" else PayoutStatus.FAILED)
        payout.last_error = (note or f"transfer {gateway_status}")[:1000]
        metrics.PAYOUTS.labels(status=payout.status).inc()
        await emit_payout(session, "payout.failed", payout)


async def emit_payout(session: AsyncSession, event_type: str, payout: Payout) -> None:
    """A payout event, about its payee; other domains call it for their own payout states."""
    await session.flush()
    emit(session, event_type, PayoutOut.model_validate(payout), subjects=[payout.user_id])


async def _reverse_paid(session: AsyncSession, payout: Payout, note: str | None) -> None:
    """The paid entry moved the money `payout:in_flight -> gateway`; it comes back to the payee."""
    await post(session, kind="payout_reversed",
               legs=move(accounts.gateway(payout.currency), accounts.payable(payout.user_id, payout.currency),
                         payout.amount),
               idempotency_key=f"payout:{payout.id}:{payout.attempts}:reversed_after_paid",
               memo=f"payout {payout.reference} reversed after it was paid")
    paid_at = payout.paid_at.isoformat() if payout.paid_at else "unknown"
    reversal = f"transfer reversed after it was paid (paid at {paid_at}); the money is owed again"
    advance(payout, PayoutStatus.REVERSED)
    payout.paid_at = None
    payout.last_error = (note or reversal)[:1000]
    metrics.PAYOUTS.labels(status="reversed_after_paid").inc()
    await emit_payout(session, "payout.failed", payout)


async def require_own_payout(session: AsyncSession, principal: Principal, payout_id: str) -> Payout:
    """The caller's own payout; anyone else's is answered as if it did not exist."""
    payout = await session.get(Payout, payout_id)
    if payout is None or payout.user_id != principal.user_id:
        raise NotFound("Payout not found", payout_id=payout_id)
    return payout


async def retry_payout(session: AsyncSession, principal: Principal, payout_id: str) -> Payout:
    payout = await session.scalar(select(Payout).where(Payout.id == payout_id).with_for_update())
    if payout is None:
        raise NotFound("Payout not found", payout_id=payout_id)
    if payout.status not in ("failed", "reversed"):
        raise InvalidState("Only a payout that failed conclusively can be retried", status=payout.status)
    account = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == payout.user_id))
    if account is None:
        raise ValidationFailed("The payee has no payout account")
    before = payout.status
    advance(payout, PayoutStatus.PENDING)
    payout.recipient_code = account.recipient_code
    payout.available_at = utcnow()
    audit.record(session, principal, "payout.retried", "payout", payout.id, {
        "user_id": payout.user_id, "amount": payout.amount, "currency": payout.currency,
        "status": {"before": before, "after": payout.status},
    })
    return payout


async def list_payouts(
    session: AsyncSession, params: PageParams, *, user_id: str | None = None, status: str | None = None
) -> tuple[Sequence[Payout], str | None]:
    stmt = where_given(select(Payout), {Payout.user_id: user_id, Payout.status: status})
    return await fetch_page(session, stmt, Payout.id, params)
