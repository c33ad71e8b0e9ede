"""Revenue payments: an app's owner (or an admin) pays an investor pool directly for a period; it waits in
`revenue:app:{app_id}` until it is distributed over the holders. To pay the investors' part of what the app
earned, computed by the service, declare the revenue instead (`declarations.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import manages, require
from app.apps.service import check_currency, get_app
from app.core.errors import CurrencyNotSupported, InvalidAmount, ValidationFailed
from app.core.money import MoneyError, check_payable, to_minor
from app.core.security import Principal
from app.distributions.automatic import queue_distributions
from app.ledger import accounts
from app.ledger.service import Entry, move, post_entries
from app.models import Payment
from app.payments.schemas import PaymentCreate
from app.payments.types import PaymentPlan
from app.runtime import Runtime


class RevenuePayment:
    name = "revenue"

    async def plan(self, session: AsyncSession, rt: Runtime, principal: Principal,
                   request: PaymentCreate) -> PaymentPlan:
        app = await get_app(session, request.app_id)
        require(manages(app, principal), "Only the app's owner or an admin pays in its revenue")
        if request.period is None:
            raise ValidationFailed("period (YYYY-MM) is required for revenue")
        if request.amount is None:
            raise InvalidAmount("amount is required for revenue")
        currency = check_currency(rt.settings, request.currency)
        if currency != app.currency:
            raise CurrencyNotSupported(f"This app takes {app.currency}", currency=currency, supported=[app.currency])
        try:
            amount = to_minor(request.amount, currency)
            check_payable(amount, currency, rt.settings.max_payment_amount)
        except MoneyError as exc:
            raise InvalidAmount(str(exc)) from None
        return PaymentPlan(amount=amount, currency=currency, app_id=app.id, period=request.period)

    async def fulfil(self, session: AsyncSession, rt: Runtime, payments: Sequence[Payment]) -> None:
        await post_entries(session, [
            Entry("revenue", move(accounts.gateway(p.currency), accounts.revenue(p.app_id, p.currency), p.amount),
                  idempotency_key=f"revenue:{p.reference}", memo=f"revenue {p.period}")
            for p in payments
        ])
        await queue_distributions(session, rt, ((p.app_id, p.period, p.currency) for p in payments if p.period))


