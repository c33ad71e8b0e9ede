"""Payment flows that own their transactions: creating a payment (the gateway is called between two
units of work, never inside one) and verifying a charge with the gateway, then applying it in a group
commit shared with the charges verified at the same time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.errors import PaymentFailed
from app.core.security import Principal
from app.gateway.errors import GatewayError
from app.gateway.types import VerifiedTransaction
from app.models import Payment
from app.models.base import new_id
from app.payments.schemas import PaymentCreate
from app.payments.service import (
    apply_verifications,
    check_callback_url,
    get_payment,
    new_reference,
)
from app.payments.types import PaymentPlan, handler_for
from app.runtime import Runtime


@dataclass(frozen=True)
class Checkout:
    """Who pays a planned payment, and how the gateway's checkout is set up for them."""

    payment_type: str
    payer_id: str
    email: str
    callback_url: str | None = None
    channels: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


Written = Callable[[AsyncSession, Payment], Awaitable[None]]


async def create_payment(
    rt: Runtime,
    principal: Principal,
    request: PaymentCreate,
    *,
    written: Written | None = None,
) -> Payment:
    """Plan, initialise the charge at the gateway, then write the payment; `written` runs in the
    transaction that writes it (the route records its Idempotency-Key answer there)."""
    check_callback_url(rt.settings, request.callback_url)
    handler = handler_for(rt, request.payment_type)
    async with rt.db.unit_of_work() as session:
        plan = await handler.plan(session, rt, principal, request)
    checkout = Checkout(payment_type=request.payment_type, payer_id=principal.user_id, email=request.email,
                        callback_url=request.callback_url, channels=request.channels, metadata=request.metadata)
    return await open_checkout(rt, checkout, plan, written=written)


async def open_checkout(rt: Runtime, checkout: Checkout, plan: PaymentPlan, *, written: Written | None = None
                        ) -> Payment:
    """Initialise the charge of an already planned payment at the gateway (outside any transaction), then
    write the payment `pending`; `written` runs in the transaction that writes it, and a refusal it raises
    leaves no payment (the initialised charge is then never paid: nobody has its link)."""
    reference = new_reference()
    metadata: dict[str, Any] = {
        **checkout.metadata,
        "payment_type": checkout.payment_type,
        "app_id": plan.app_id,
        "user_id": checkout.payer_id,
    }
    # The gateway call happens between two transactions, never inside one.
    initialized = await rt.gateway.initialize_transaction(
        email=checkout.email,
        amount=plan.amount,
        currency=plan.currency,
        reference=reference,
        callback_url=checkout.callback_url,
        metadata=metadata,
        channels=checkout.channels,
    )
    payment = Payment(
        id=new_id("pay"),
        reference=reference,
        user_id=checkout.payer_id,
        app_id=plan.app_id,
        payment_type=checkout.payment_type,
        status="pending",
        amount=plan.amount,
        currency=plan.currency,
        email=checkout.email,
        channels=checkout.channels,
        callback_url=checkout.callback_url,
        extra=checkout.metadata,
        access_code=initialized.access_code,
        authorization_url=initialized.authorization_url,
        shares=plan.shares,
        share_transfer_id=plan.share_transfer_id,
        period=plan.period,
        refunded_amount=0,
    )
    async with rt.db.unit_of_work() as session:
        session.add(payment)
        if written is not None:
            await session.flush()
            await written(session, payment)
    metrics.PAYMENTS.labels(status="pending").inc()
    return payment


async def verify_and_apply(rt: Runtime, reference: str) -> Payment | None:
    """Ask the gateway about a charge, then apply its answer in a transaction shared with the charges
    verified at the same time (an app's share count and escrow account are written once per batch)."""
    return await _apply(rt, reference, await rt.gateway.verify_transaction(reference))


async def _apply(rt: Runtime, reference: str, verified: VerifiedTransaction) -> Payment | None:
    if verified.reference != reference:
        raise GatewayError("verify answered for another reference", gateway_code="reference_mismatch")
    commits = rt.group_commit("verified charges", lambda session, batch: apply_verifications(session, rt, batch),
                              committed=metrics.CREDIT_BATCH_SIZE.observe)
    return await commits.submit((reference, verified), key=reference)


async def verify_payment(rt: Runtime, principal: Principal, reference: str) -> Payment:
    async with rt.db.unit_of_work() as session:
        payment = await get_payment(session, principal, reference)
    if payment.status != "pending" and payment.status not in ("failed", "abandoned"):
        return payment
    verified = await rt.gateway.verify_transaction(reference)
    applied = await _apply(rt, reference, verified)
    assert applied is not None
    if applied.status in ("failed", "abandoned") and not verified.is_success:
        # The caller asked for an answer now: the charge did not go through (the customer may still retry
        # on the same checkout; a later success is credited then).
        raise PaymentFailed(reference=reference, status=verified.status, gateway_response=verified.gateway_response)
    return applied
