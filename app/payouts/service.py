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
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.db import insert_on_conflict
from app.core.errors import InvalidState, NotFound, ValidationFailed
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.events.record import emit
from app.gateway.types import TRANSFER_CONCLUSIVE_FAILURES
from app.ledger import accounts
from app.ledger.service import move, post
from app.models import Payout, PayoutAccount, audit
from app.models.base import new_id, utcnow
from app.models.statuses import PAYOUT_IN_FLIGHT, PayoutStatus, advance
from app.payouts.schemas import PayoutOut

# Paystack's transfer recipient types and the currency each pays out in. USD has none: Paystack's transfers
# pay out from a balance to accounts in the business's own country (docs/paystack.md).
TYPE_CURRENCIES: dict[str, frozenset[str]] = {
    "nuban": frozenset({"NGN"}),
    "ghipss": frozenset({"GHS"}),
    "mobile_money": frozenset({"GHS", "KES"}),
    "mobile_money_business": frozenset({"KES"}),
    "kepss": frozenset({"KES"}),
    "basa": frozenset({"ZAR"}),
}
# The type an account of a currency has when the caller names none (what PUT /me always assumed).
DEFAULT_TYPES = {"NGN": "nuban", "GHS": "ghipss", "ZAR": "basa", "KES": "mobile_money"}
# A payout's status as answers show it, in SQL (Payout.shown_status in Python).
SHOWN_STATUS = case(((Payout.status == "pending") & Payout.recipient_code.is_(None), "awaiting_payout_account"),
                    else_=Payout.status)


def new_payout_reference() -> str:
    """Paystack transfer references: 16-50 characters of a-z, 0-9, '-' and '_'."""
    return new_payout_references(1)[0]


def new_payout_references(count: int) -> list[str]:
    """`count` references like `new_payout_reference`'s, in ascending order, so that a batch of payouts goes
    into the references' unique index in key order (each stays 96 random bits)."""
    random = secrets.token_hex(12 * count)
    return sorted("payout-" + random[i:i + 24] for i in range(0, 24 * count, 24))


_RECIPIENTS = select(PayoutAccount.user_id, PayoutAccount.recipient_code).where(
    PayoutAccount.user_id.in_(bindparam("user_ids", expanding=True)),
    PayoutAccount.currency == bindparam("currency"), PayoutAccount.is_default,
)


async def payout_recipients(session: AsyncSession, user_ids: Iterable[str], currency: str) -> dict[str, str]:
    """user_id -> transfer recipient, for those of `user_ids` with a default payout account in `currency`."""
    rows = await session.execute(_RECIPIENTS, {"user_ids": sorted(set(user_ids)), "currency": currency})
    return {user_id: code for user_id, code in rows.all()}


def payout_row(
    *, user_id: str, amount: int, currency: str, reason: str, source_id: str, recipient_code: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The columns of a payout owed to `user_id`; it goes out once there is a `recipient_code` (a payout
    account). A batch inserts many such rows at once; one payout is `Payout(**payout_row(...))`."""
    return {
        "id": new_id("po"), "user_id": user_id, "amount": amount, "currency": currency, "status": "pending",
        "reference": new_payout_reference(), "reason": reason, "source_id": source_id,
        "recipient_code": recipient_code, "attempts": 0, "available_at": now, "created_at": now, "updated_at": now,
    }


async def queue_payout(
    session: AsyncSession, *, user_id: str, amount: int, currency: str, reason: str, source_id: str
) -> Payout:
    """Owe `amount` to `user_id` as a payout; it goes out once they have a payout account."""
    recipients = await payout_recipients(session, [user_id], currency)
    payout = Payout(**payout_row(user_id=user_id, amount=amount, currency=currency, reason=reason,
                                 source_id=source_id, recipient_code=recipients.get(user_id), now=utcnow()))
    session.add(payout)
    return payout


# ---- payout accounts ---------------------------------------------------------------------------


async def list_payout_accounts(session: AsyncSession, principal: Principal) -> Sequence[PayoutAccount]:
    return (
        await session.scalars(
            select(PayoutAccount).where(PayoutAccount.user_id == principal.user_id)
            .order_by(PayoutAccount.currency, PayoutAccount.created_at, PayoutAccount.id)
        )
    ).all()


async def own_payout_account(session: AsyncSession, principal: Principal, account_id: str) -> PayoutAccount:
    """The caller's own account; anyone else's is answered as if it did not exist."""
    stmt = select(PayoutAccount).where(PayoutAccount.id == account_id, PayoutAccount.user_id == principal.user_id)
    # as it is now, not as this session first read it
    account = await session.scalar(stmt.execution_options(populate_existing=True))
    if account is None:
        raise NotFound("Payout account not found", payout_account_id=account_id)
    return account


async def save_payout_account(
    session: AsyncSession, user_id: str, details: dict[str, Any]
) -> tuple[PayoutAccount, bool]:
    """The account with these details (one transfer recipient), and whether it is new. The first account of
    a currency becomes its default: the insert that would make a second default does nothing (the partial
    unique index decides, so two first registrations at once leave one default) and the account is
    written as not default instead."""
    now = utcnow()
    for is_default in (True, False):
        row = {"id": new_id("pa"), "user_id": user_id, "created_at": now, "updated_at": now,
               "is_default": is_default, **details}
        created = (
            await session.scalars(
                insert_on_conflict(session, PayoutAccount).values(row).on_conflict_do_nothing()
                .returning(PayoutAccount),
                execution_options={"populate_existing": True},
            )
        ).one_or_none()
        if created is not None:
            if is_default:
                await _point_pending_payouts(session, user_id, created.currency, created.recipient_code)
            return created, True
    # The same account again: Paystack gave the recipient it already had.
    existing = await session.scalar(
        select(PayoutAccount).where(PayoutAccount.user_id == user_id,
                                    PayoutAccount.recipient_code == details["recipient_code"])
    )
    if existing is None:  # only if it was deleted between the two statements
        raise InvalidState("The payout account changed meanwhile; send the request again")
    return existing, False


async def make_default(session: AsyncSession, account: PayoutAccount) -> PayoutAccount:
    """`account` becomes the default of its currency, and pending payouts in that currency go to it.

    The person's accounts in the currency are locked first (in id order), so that two changes at once
    take turns; the partial unique index is the last word, and a change that still meets another one's
    default (an account created meanwhile) is tried again."""
    for attempt in range(3):
        try:
            async with session.begin_nested():
                await _lock_accounts(session, account.user_id, account.currency)
                await session.execute(
                    update(PayoutAccount)
                    .where(PayoutAccount.user_id == account.user_id, PayoutAccount.currency == account.currency,
                           PayoutAccount.is_default, PayoutAccount.id != account.id)
                    .values(is_default=False, updated_at=utcnow())
                )
                await session.execute(
                    update(PayoutAccount).where(PayoutAccount.id == account.id)
                    .values(is_default=True, updated_at=utcnow())
                )
        except IntegrityError:
            if attempt == 2:
                raise InvalidState("The default payout account is being changed; send the request again") from None
            continue
        break
    await _point_pending_payouts(session, account.user_id, account.currency, account.recipient_code)
    await session.refresh(account)
    return account


async def delete_payout_account(session: AsyncSession, principal: Principal, account_id: str) -> None:
    """Remove an account no payout in flight uses. Removing the default makes the person's oldest other
    account in that currency the default; with none, pending payouts in it wait for one."""
    account = await own_payout_account(session, principal, account_id)
    # The person's accounts in the currency are locked in id order, as make_default locks them (the same
    # order for both: no deadlock), then the account is read again: another delete may have won.
    await _lock_accounts(session, account.user_id, account.currency)
    account = await own_payout_account(session, principal, account_id)
    in_flight = await session.scalar(
        select(Payout.id).where(Payout.user_id == account.user_id, Payout.currency == account.currency,
                                Payout.recipient_code == account.recipient_code,
                                Payout.status.in_(PAYOUT_IN_FLIGHT)).limit(1)
    )
    if in_flight is not None:
        raise InvalidState("A payout on its way uses this account; delete it once the payout is settled",
                           payout_id=in_flight)
    await session.execute(delete(PayoutAccount).where(PayoutAccount.id == account.id))
    if not account.is_default:
        return
    successor = await session.scalar(
        select(PayoutAccount)
        .where(PayoutAccount.user_id == account.user_id, PayoutAccount.currency == account.currency)
        .order_by(PayoutAccount.created_at, PayoutAccount.id).limit(1)
    )
    if successor is not None:
        await make_default(session, successor)
    else:
        await _point_pending_payouts(session, account.user_id, account.currency, None)


async def _lock_accounts(session: AsyncSession, user_id: str, currency: str) -> None:
    await session.execute(
        select(PayoutAccount.id).where(PayoutAccount.user_id == user_id, PayoutAccount.currency == currency)
        .order_by(PayoutAccount.id).with_for_update()
    )


async def _point_pending_payouts(session: AsyncSession, user_id: str, currency: str, recipient: str | None) -> None:
    """Pending payouts in `currency` go to `recipient` (None: they wait for an account); those waiting
    for one are due now."""
    await session.execute(
        update(Payout)
        .where(Payout.user_id == user_id, Payout.status == "pending", Payout.currency == currency)
        .values(recipient_code=recipient, available_at=utcnow())
    )


# ---- sending -----------------------------------------------------------------------------------


async def settle_payout(session: AsyncSession, payout: Payout, gateway_status: str, note: str | None = None) -> None:
    """Apply a conclusive transfer status once; anything else leaves the payout as it is.

    A paid transfer can still come back (the receiving bank sends it back: `reversed`, with
    `transferred_at` set): the payee is owed the money again.
    """
    if payout.status == "paid" and gateway_status == "reversed":
        await _reverse_paid(session, payout, note)
        return
    if payout.status not in PAYOUT_IN_FLIGHT:
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
    account = await session.scalar(
        select(PayoutAccount).where(PayoutAccount.user_id == payout.user_id,
                                    PayoutAccount.currency == payout.currency, PayoutAccount.is_default)
    )
    if account is None:
        raise ValidationFailed("The payee has no payout account in this currency", currency=payout.currency)
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
    stmt = where_given(select(Payout), {Payout.user_id: user_id})
    if status == "awaiting_payout_account":  # shown, not stored: pending with no account to go to
        stmt = stmt.where(Payout.status == "pending", Payout.recipient_code.is_(None))
    elif status == "pending":
        stmt = stmt.where(Payout.status == "pending", Payout.recipient_code.is_not(None))
    elif status is not None:
        stmt = stmt.where(Payout.status == status)
    return await fetch_page(session, stmt, Payout.id, params)
