"""Distribution flows that own their transactions: a revenue declaration is checked and priced in one
unit of work, its payment's checkout is opened at the gateway outside any, and the declaration is written
with the payment in the next (the shared payment flow, `open_checkout`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.core.security import Principal
from app.distributions.declarations import PAYMENT_TYPE, draft_declaration, record_declaration
from app.distributions.schemas import RevenueDeclarationIn, RevenueDeclarationOut
from app.models import Payment
from app.payments.flows import Checkout, open_checkout
from app.payments.service import check_callback_url
from app.payments.types import PaymentPlan
from app.runtime import Runtime
from app.web.idempotency import Answer


async def declare_revenue(rt: Runtime, principal: Principal, app_id: str, body: RevenueDeclarationIn,
                          answer: Answer) -> RevenueDeclarationOut:
    """Write a declaration; with a pool above zero, also the payment that collects it from the app's owner.
    The Idempotency-Key answer is recorded in the transaction that writes them."""
    check_callback_url(rt.settings, body.callback_url)
    async with rt.db.unit_of_work() as session:
        draft = await draft_declaration(session, rt, principal, app_id, body)
    if draft.pool == 0:
        async with rt.db.unit_of_work() as session:
            declaration = await record_declaration(session, draft, None)
            result = RevenueDeclarationOut.model_validate(declaration)
            await answer.record(session, result)
        return result

    email = body.email or principal.email
    if email is None:
        raise ValidationFailed("email is required: the gateway's checkout needs the payer's email", field="email")
    results: list[RevenueDeclarationOut] = []

    async def written(session: AsyncSession, payment: Payment) -> None:
        declaration = await record_declaration(session, draft, payment)
        results.append(RevenueDeclarationOut.model_validate(declaration))
        await answer.record(session, results[0])

    # The owner pays, whoever declares: the payment is theirs to read and verify.
    checkout = Checkout(payment_type=PAYMENT_TYPE, payer_id=draft.app.owner_id, email=email,
                        callback_url=body.callback_url, metadata={"period": draft.period})
    plan = PaymentPlan(amount=draft.pool, currency=draft.currency, app_id=draft.app.id, period=draft.period)
    await open_checkout(rt, checkout, plan, written=written)
    return results[0]
