"""Investment payments: buy new shares of an app; the money waits in the app's escrow."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.service import check_currency, get_app
from app.core.errors import CurrencyNotSupported, InvalidAmount, SharesUnavailable
from app.core.money import MoneyError, check_payable, to_major, to_minor
from app.core.security import Principal
from app.escrow.service import deposit_held, new_deposit_row
from app.events.record import emit_all
from app.ledger import accounts
from app.ledger.service import post_entries
from app.models import EscrowTransaction, Payment
from app.payments.gateway_refunds import queue_refund
from app.payments.schemas import PaymentCreate
from app.payments.types import PaymentPlan
from app.runtime import Runtime
from app.shares.service import Grant, issue_shares

log = logging.getLogger(__name__)


class InvestmentPayment:
    name = "investment"

    async def plan(
        self, session: AsyncSession, rt: Runtime, principal: Principal, request: PaymentCreate
    ) -> PaymentPlan:
        app = await get_app(session, request.app_id)
        currency = check_currency(rt.settings, request.currency)
        if currency != app.currency:
            raise CurrencyNotSupported(f"This app takes {app.currency}", currency=currency, supported=[app.currency])
        shares = request.shares
        if request.amount is not None:
            try:
                amount = to_minor(request.amount, currency)
            except MoneyError as exc:
                raise InvalidAmount(str(exc)) from None
            if amount % app.share_price:
                raise InvalidAmount(
                    "The amount is not a whole number of shares",
                    share_price=to_major(app.share_price, currency),
                )
            if shares is not None and shares * app.share_price != amount:
                raise InvalidAmount("shares and amount disagree", expected_amount=to_major(
                    shares * app.share_price, currency))
            shares = amount // app.share_price
        if shares is None:
            raise InvalidAmount("Give shares or amount")
        amount = shares * app.share_price
        try:
            check_payable(amount, currency, rt.settings.max_payment_amount)
        except MoneyError as exc:
            raise InvalidAmount(str(exc)) from None
        available = app.total_shares - app.shares_issued
        if shares > available:
            raise SharesUnavailable(shares_requested=shares, shares_available=available)
        return PaymentPlan(amount=amount, currency=currency, app_id=app.id, shares=shares)

    async def fulfil(self, session: AsyncSession, rt: Runtime, payments: Sequence[Payment]) -> None:
        """Issue the shares and hold the money in escrow, per app, for the whole batch at once: the
        app's share count and escrow account are written once."""
        by_app: dict[str, list[Payment]] = defaultdict(list)
        for payment in payments:
            by_app[payment.app_id].append(payment)
        for app_id, bought in by_app.items():
            app, issued = await issue_shares(session, app_id=app_id, grants=[
                Grant(user_id=p.user_id, shares=p.shares or 0, source_id=p.id) for p in bought])
            deposits, entries = [], []
            for payment, ok in zip(bought, issued, strict=True):
                if ok:
                    deposit, entry = new_deposit_row(app_id, investor=payment.user_id, amount=payment.amount,
                                                     currency=payment.currency, gateway_reference=payment.reference,
                                                     payment_id=payment.id, shares=payment.shares or 0)
                    deposits.append(deposit)
                    entries.append(entry)
                    continue
                # Sold out between checkout and payment: the money goes straight back.
                log.info("shares sold out for %s; refunding", payment.reference)
                payment.outcome_note = "shares sold out; refunded"
                await queue_refund(
                    session,
                    payment,
                    amount=payment.amount,
                    source_account=accounts.gateway(payment.currency),
                    return_account=accounts.payable(payment.user_id, payment.currency),
                    reason="shares sold out",
                )
                rt.notify_worker()
            if deposits:
                # Rows, not ORM objects: building and flushing them was a fifth of the batch's CPU (measured).
                await session.execute(insert(EscrowTransaction.__table__), deposits)
                await emit_all(session, [deposit_held(deposit, app) for deposit in deposits])
            await post_entries(session, entries)


