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

import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.service import check_currency
from app.core import metrics, outbox
from app.core.errors import InvalidBankAccount, InvalidState, NotFound, ValidationFailed
from app.core.money import to_major
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.gateway.errors import GatewayError, GatewayRejected
from app.gateway.types import TRANSFER_CONCLUSIVE_FAILURES, BulkTransferItem, TransferResult
from app.ledger import accounts
from app.ledger.service import move, post
from app.models import Payout, PayoutAccount
from app.models.base import new_id, utcnow
from app.models.statuses import PayoutStatus, advance
from app.payouts.schemas import PayoutAccountIn, PayoutAccountOut, PayoutOut
from app.runtime import Runtime
from app.webhooks.inbox import RetryLater

log = logging.getLogger(__name__)

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


async def register_payout_account(rt: Runtime, principal: Principal, body: PayoutAccountIn) -> PayoutAccount:
    currency = check_currency(rt.settings, body.currency)
    # Gateway calls first, outside any transaction.
    try:
        resolved = await rt.gateway.resolve_account(account_number=body.account_number, bank_code=body.bank_code)
        recipient = await rt.gateway.create_transfer_recipient(
            name=body.account_name or resolved.account_name,
            account_number=body.account_number,
            bank_code=body.bank_code,
            currency=currency,
            type=RECIPIENT_TYPES.get(currency, "nuban"),
        )
    except GatewayRejected as error:
        if error.status_code in _OUR_OWN_REFUSALS:
            raise
        # Paystack refused the details themselves: the caller's to correct, not a gateway fault to retry.
        raise InvalidBankAccount("The gateway could not verify these bank details", **error.details()) from error
    now = utcnow()
    details = {
        "currency": currency,
        "bank_code": body.bank_code,
        "account_number_encrypted": rt.cipher.encrypt(body.account_number),
        "account_last4": body.account_number[-4:],
        "account_name": body.account_name or resolved.account_name,
        "recipient_code": recipient.recipient_code,
        "updated_at": now,
    }
    insert = pg_insert if rt.db.is_postgres else sqlite_insert
    async with rt.db.unit_of_work() as session:
        # One statement: a user's first registrations arriving together all land on the one row.
        account = (
            await session.scalars(
                insert(PayoutAccount)
                .values(id=new_id("pa"), user_id=principal.user_id, created_at=now, **details)
                .on_conflict_do_update(index_elements=["user_id"], set_=details)
                .returning(PayoutAccount),
                execution_options={"populate_existing": True},
            )
        ).one()
        # Money that waited for an account goes out now.
        await session.execute(
            update(Payout)
            .where(Payout.user_id == principal.user_id, Payout.status == "pending", Payout.currency == currency)
            .values(recipient_code=recipient.recipient_code, available_at=utcnow())
        )
    rt.notify_worker()
    return account


async def get_payout_account(session: AsyncSession, principal: Principal) -> PayoutAccount:
    account = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == principal.user_id))
    if account is None:
        raise NotFound("No payout account registered")
    return account


# ---- sending -----------------------------------------------------------------------------------


async def _claim_due(rt: Runtime) -> list[Payout]:
    """Take due payouts and move their money in flight before the transfer is asked for.

    Each goes to the payee's payout account as it is now: a payout written while the account was
    being registered (it read none, and committed after the registration updated the pending ones)
    would otherwise wait for an account that exists."""
    lease = outbox.lease(rt.settings.worker_lease_seconds)
    async with rt.db.unit_of_work() as session:
        payable = (
            select(Payout, PayoutAccount.recipient_code)
            .outerjoin(PayoutAccount, (PayoutAccount.user_id == Payout.user_id)
                       & (PayoutAccount.currency == Payout.currency))
            .where(Payout.status == "pending",
                   or_(Payout.recipient_code.is_not(None), PayoutAccount.recipient_code.is_not(None)))
            .order_by(Payout.id)
        )
        claimed = (
            await session.execute(
                outbox.due(payable, Payout.available_at, utcnow(), limit=rt.settings.worker_batch_size, of=Payout)
            )
        ).all()
        payouts = [payout for payout, _ in claimed]
        for payout, current_recipient in claimed:
            payout.recipient_code = current_recipient or payout.recipient_code
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
    claimed = await _claim_due(rt)
    singles = [p for p in claimed if p.reason != "distribution"]
    # Distributions pay many people at once: Paystack bulk transfers, each item under its own reference.
    batchable: dict[str, list[Payout]] = {}
    for payout in claimed:
        if payout.reason == "distribution":
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
    await _record_result(rt, result, payout.attempts)
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
        await _record_result(rt, result, attempts[result.reference])
    return len(payouts)


async def _record_result(rt: Runtime, result: TransferResult, attempt: int) -> None:
    """What the gateway said about the payout's transfer while the payout was at `attempt`."""
    if result.is_success or result.is_conclusive_failure:
        await _settle_by_reference(rt, result.reference, result.status, attempt=attempt)
        return
    async with rt.db.unit_of_work() as session:
        await session.execute(
            update(Payout)
            .where(Payout.reference == result.reference, Payout.status == "processing", Payout.attempts == attempt)
            .values(transfer_code=result.transfer_code)
        )


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


async def settle_payout(session: AsyncSession, payout: Payout, gateway_status: str, note: str | None = None) -> None:
    """Apply a conclusive transfer status once; anything else leaves the payout as it is.

    A paid transfer can still come back (the receiving bank sends it back: `reversed`, with
    `transferred_at` set): the payee is owed the money again.
    """
    if payout.status == "paid" and gateway_status == "reversed":
        await _reverse_paid(session, payout, note)
        return
    if payout.status != "processing":
        return
    in_flight = accounts.payout_in_flight(payout.currency)
    if gateway_status == "success":
        await post(session, kind="payout_paid", legs=move(in_flight, accounts.gateway(payout.currency), payout.amount),
                   idempotency_key=f"payout:{payout.id}:{payout.attempts}:paid")
        advance(payout, PayoutStatus.PAID)
        payout.paid_at = utcnow()
        metrics.PAYOUTS.labels(status="paid").inc()
    elif gateway_status in TRANSFER_CONCLUSIVE_FAILURES:
        await post(session, kind="payout_returned",
                   legs=move(in_flight, accounts.payable(payout.user_id, payout.currency), payout.amount),
                   idempotency_key=f"payout:{payout.id}:{payout.attempts}:returned")
        advance(payout, PayoutStatus.REVERSED if gateway_status == "reversed" else PayoutStatus.FAILED)
        payout.last_error = (note or f"transfer {gateway_status}")[:1000]
        metrics.PAYOUTS.labels(status=payout.status).inc()


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
                select(Payout).where(Payout.status == "processing", Payout.updated_at <= cutoff)
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
        await _record_result(rt, result, payout.attempts)
        checked += 1
    return checked


async def _rejected(rt: Runtime, payout: Payout, error: GatewayRejected, note: str | None = None) -> None:
    """Paystack refused the transfer. That is a failure only if no transfer exists under the reference:
    a refusal can also mean "this reference is taken" when an earlier try of ours went through (the
    client retries a POST whose answer timed out), and that transfer may still succeed."""
    try:
        existing = await rt.gateway.verify_transfer(payout.reference)
    except GatewayRejected as verify_error:
        if verify_error.status_code == 404:
            # nothing was sent: the money is owed again
            await _settle_by_reference(rt, payout.reference, "failed", note or error.message, attempt=payout.attempts)
        return
    except GatewayError:
        return  # outcome unknown: stays processing for the reconciler
    await _record_result(rt, existing, payout.attempts)


async def require_own_payout(session: AsyncSession, principal: Principal, payout_id: str) -> Payout:
    """The caller's own payout; anyone else's is answered as if it did not exist."""
    payout = await session.get(Payout, payout_id)
    if payout is None or payout.user_id != principal.user_id:
        raise NotFound("Payout not found", payout_id=payout_id)
    return payout


async def retry_payout(session: AsyncSession, payout_id: str) -> Payout:
    payout = await session.scalar(select(Payout).where(Payout.id == payout_id).with_for_update())
    if payout is None:
        raise NotFound("Payout not found", payout_id=payout_id)
    if payout.status not in ("failed", "reversed"):
        raise InvalidState("Only a payout that failed conclusively can be retried", status=payout.status)
    account = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == payout.user_id))
    if account is None:
        raise ValidationFailed("The payee has no payout account")
    advance(payout, PayoutStatus.PENDING)
    payout.recipient_code = account.recipient_code
    payout.available_at = utcnow()
    return payout


async def list_payouts(
    session: AsyncSession, params: PageParams, *, user_id: str | None = None, status: str | None = None
) -> tuple[Sequence[Payout], str | None]:
    stmt = where_given(select(Payout), {Payout.user_id: user_id, Payout.status: status})
    return await fetch_page(session, stmt, Payout.id, params)


def payout_out(payout: Payout) -> PayoutOut:
    return PayoutOut(
        id=payout.id, user_id=payout.user_id, amount=to_major(payout.amount, payout.currency),
        currency=payout.currency, status=payout.status, reference=payout.reference, reason=payout.reason,
        source_id=payout.source_id, awaiting_payout_account=payout.recipient_code is None,
        attempts=payout.attempts, last_error=payout.last_error, paid_at=payout.paid_at,
        created_at=payout.created_at, updated_at=payout.updated_at,
    )


def account_out(account: PayoutAccount) -> PayoutAccountOut:
    return PayoutAccountOut(
        user_id=account.user_id, currency=account.currency, bank_code=account.bank_code,
        account_number_last4=account.account_last4, account_name=account.account_name,
        recipient_code=account.recipient_code, updated_at=account.updated_at,
    )
