"""Payments in a session the caller owns: read them, and apply what the gateway says exactly once.

`apply_verifications` is the single place charge outcomes are applied; the webhook worker, the client's
verify call and the reconciler all go through it (`flows.verify_and_apply`). Nothing here commits or
calls the gateway: `flows.py` does, and `tasks.py` holds the worker's jobs.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.service import readable_by
from app.core import metrics
from app.core.config import Settings
from app.core.errors import NotFound, ValidationFailed
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.events.record import NewEvent, emit_all
from app.gateway.types import VerifiedTransaction
from app.models import Payment
from app.models.base import utcnow
from app.models.statuses import PaymentStatus, advance
from app.payments.schemas import PaymentOut
from app.payments.types import handler_for
from app.runtime import Runtime

log = logging.getLogger(__name__)

# Paystack's verify statuses that end a charge without money
FAILED_STATUSES = {"failed", "reversed"}
ABANDONED_STATUSES = {"abandoned"}


REFERENCE_PREFIX = "pay-"


def new_reference() -> str:
    """Ours, unique, and within Paystack's reference alphabet (letters, digits, '-', '.', '=')."""
    return f"{REFERENCE_PREFIX}{int(time.time() * 1000):x}-{secrets.token_hex(8)}"


def check_callback_url(settings: Settings, callback_url: str | None) -> None:
    """Paystack sends the payer back there after paying: https only, but for the sandbox, whose checkout may
    return to a frontend on a developer's machine."""
    if callback_url is not None and not settings.is_sandbox and not callback_url.startswith("https://"):
        raise ValidationFailed("callback_url must be an https URL", field="callback_url")


async def get_payment(session: AsyncSession, principal: Principal, reference: str) -> Payment:
    payment = await session.scalar(select(Payment).where(Payment.reference == reference))
    if payment is None or not (principal.is_admin or payment.user_id == principal.user_id):
        raise NotFound("Payment not found", reference=reference)
    return payment


async def list_payments(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    status: str | None = None,
    payment_type: str | None = None,
    app_id: str | None = None,
) -> tuple[Sequence[Payment], str | None]:
    stmt = await readable_by(session, principal, select(Payment), own=(Payment.user_id,))
    stmt = where_given(stmt, {Payment.status: status, Payment.payment_type: payment_type, Payment.app_id: app_id})
    return await fetch_page(session, stmt, Payment.id, params)


async def apply_verifications(
    session: AsyncSession, rt: Runtime, verdicts: Sequence[tuple[str, VerifiedTransaction]]
) -> list[Payment | None]:
    """Apply the gateway's verdicts on charges (reference, verdict), each at most once, in order;
    returns each reference's payment (None if unknown). The successful ones are fulfilled together,
    type by type."""
    references = [reference for reference, _ in verdicts]
    payments = {
        payment.reference: payment
        for payment in (await session.scalars(
            select(Payment).where(Payment.reference.in_(references)).order_by(Payment.id).with_for_update()
        )).all()
    }
    started = time.perf_counter()
    succeeded: dict[str, list[Payment]] = defaultdict(list)
    ended: list[tuple[str, Payment]] = []  # events other than payment.succeeded, in order
    for reference, verified in verdicts:
        payment = payments.get(reference)
        if payment is None or payment.status not in ("pending", "failed", "abandoned"):
            continue  # unknown, or already applied: the money was credited once
        if verified.is_success:
            if not verified.matches(payment.amount, payment.currency):
                reported = payment.flag_reason
                payment.flag_reason = (
                    f"gateway reports {verified.asked_amount} {verified.currency} "
                    f"(charged {verified.amount}, fees {verified.fees}), "
                    f"expected {payment.amount} {payment.currency}"
                )
                log.warning("payment %s flagged: %s", payment.reference, payment.flag_reason)
                metrics.PAYMENTS.labels(status="flagged").inc()
                if payment.flag_reason != reported:  # a charge seen again the same way is not news
                    ended.append(("payment.flagged", payment))
                continue
            advance(payment, PaymentStatus.SUCCESS)
            payment.paid_at = verified.paid_at or utcnow()
            payment.channel = verified.channel
            payment.gateway_transaction_id = verified.id
            payment.gateway_fee = verified.fees
            payment.charged_amount = verified.amount
            payment.flag_reason = None
            if verified.authorization_code:
                payment.authorization_code_encrypted = rt.cipher.encrypt(verified.authorization_code)
            succeeded[payment.payment_type].append(payment)
        elif payment.status == "pending" and verified.status in FAILED_STATUSES:
            advance(payment, PaymentStatus.FAILED)
            metrics.PAYMENTS.labels(status="failed").inc()
            ended.append(("payment.failed", payment))
        elif payment.status == "pending" and verified.status in ABANDONED_STATUSES:
            advance(payment, PaymentStatus.ABANDONED)
            metrics.PAYMENTS.labels(status="abandoned").inc()
    await session.flush()
    events = [NewEvent(event_type, PaymentOut.model_validate(payment), [payment.user_id])
              for event_type, payment in ended]
    for payment_type, paid in succeeded.items():
        await handler_for(rt, payment_type).fulfil(session, rt, paid)
        events += [NewEvent("payment.succeeded", PaymentOut.model_validate(payment), [payment.user_id])
                   for payment in paid]
        metrics.PAYMENTS.labels(status="success").inc(len(paid))
        credited_at = utcnow()
        for payment in paid:
            metrics.PAYMENT_PROCESSING.observe(time.perf_counter() - started)
            metrics.CHECKOUT_TO_PAID.observe((credited_at - payment.created_at).total_seconds())
    await emit_all(session, events)
    return [payments.get(reference) for reference in references]
