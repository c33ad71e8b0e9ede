"""The worker's payment jobs: `charge.success` webhooks (verified with the gateway before anything is
credited) and the reconciler of payments left pending."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.core import metrics
from app.gateway.errors import GatewayError, GatewayRejected
from app.models import Payment
from app.models.base import utcnow
from app.models.payments import REFERENCE_LENGTH
from app.models.statuses import PaymentStatus, advance
from app.payments.flows import verify_and_apply
from app.payments.service import (
    REFERENCE_PREFIX,
)
from app.runtime import Runtime
from app.webhooks.inbox import RetryLater, text_field

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
