"""Revenue declarations: an app's owner (or an admin) declares what the app earned in a period; the
investors' part of it (the pool) is collected from the owner by one payment and, once paid, shared out
over the investors by a distribution.

The rules, in one place:

- Investors are everyone holding the app's shares but its owner: shares the owner holds, bought or never
  sold, earn the owner nothing from the owner. The pool is `gross x investor shares / total_shares`,
  rounded down to the minor unit, with the holdings as at the end of the period (rebuilt from the share
  movements), or as at the declaration while the period still runs. A future period cannot be declared.
- One live declaration per (app, period, currency), held by a unique constraint. A new one replaces the
  live one unless that one was paid (409). A pool of zero is `recorded`: no payment, nothing to distribute.
- The payment of a replaced declaration that succeeds anyway (its checkout link was still open) is
  refunded to the owner in full, like an investment whose shares sold out: the live declaration is the one
  that counts, and the money is never lost (a refund the gateway refuses returns it to the owner's payable
  account, paid out like any money owed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import manages, require
from app.apps.service import check_currency, get_app
from app.core.errors import CurrencyNotSupported, InvalidAmount, InvalidState, ValidationFailed
from app.core.money import MoneyError, share_rounded_down, to_major, to_minor
from app.core.money import currency as currency_info
from app.core.schemas import PageParams, fetch_page
from app.core.security import Principal
from app.distributions.schemas import RevenueDeclarationIn
from app.distributions.service import split, write_distribution
from app.ledger import accounts
from app.ledger.service import Entry, move, post_entries
from app.models import App, Payment, RevenueDeclaration
from app.models.audit import AUTOMATION
from app.models.base import new_id, utcnow
from app.models.statuses import RevenueDeclarationStatus, advance
from app.payments.gateway_refunds import queue_refund
from app.payments.schemas import PaymentCreate
from app.payments.types import PaymentPlan
from app.payouts.service import payout_recipients
from app.runtime import Runtime
from app.shares.service import cap_table

log = logging.getLogger(__name__)

PAYMENT_TYPE = "revenue_declaration"
# Attempts at writing a declaration while others of the same period are written at the same time.
WRITE_ATTEMPTS = 5
# Holders whose payout accounts are looked up per statement: well under PostgreSQL's 32,767 bind parameters.
RECIPIENTS_PER_QUERY = 10_000
_D = RevenueDeclarationStatus


@dataclass(frozen=True)
class Draft:
    """A declaration checked and priced, not yet written."""

    app: App
    period: str
    currency: str
    gross_revenue: int
    investor_shares: int
    pool: int
    holdings_as_of: datetime
    created_by: str


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first instant of the (UTC) month and the first instant of the next one."""
    year, month = int(period[:4]), int(period[5:7])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def holdings_instant(period: str, now: datetime) -> datetime:
    """When the holdings that share a period's revenue are taken: the period's last instant, or `now` while
    the period runs. A period that has not begun cannot be declared."""
    start, end = period_bounds(period)
    if start > now:
        raise ValidationFailed("A period that has not begun cannot be declared", period=period)
    return min(end - timedelta(microseconds=1), now)


async def investor_holdings(session: AsyncSession, app: App, as_of: datetime) -> list[tuple[str, int]]:
    """(user_id, shares) of everyone but the owner as at `as_of`, in user id order."""
    return [(user_id, shares) for user_id, shares in await cap_table(session, app.id, as_of)
            if user_id != app.owner_id]


async def live_declaration(session: AsyncSession, app_id: str, period: str, currency: str, *,
                           for_update: bool = False) -> RevenueDeclaration | None:
    stmt = select(RevenueDeclaration).where(
        RevenueDeclaration.app_id == app_id, RevenueDeclaration.period == period,
        RevenueDeclaration.currency == currency, RevenueDeclaration.live.is_(True))
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(stmt)


def _check_replaceable(declaration: RevenueDeclaration | None) -> None:
    if declaration is not None and declaration.status == _D.PAID:
        raise InvalidState("This period's declaration was paid; it cannot be replaced",
                           declaration_id=declaration.id, status=declaration.status)


async def draft_declaration(session: AsyncSession, rt: Runtime, principal: Principal, app_id: str,
                            body: RevenueDeclarationIn) -> Draft:
    """Check a declaration and compute its pool; nothing is written."""
    app = await get_app(session, app_id)
    require(manages(app, principal), "Only the app's owner or an admin declares its revenue")
    currency = check_currency(rt.settings, body.currency)
    if currency != app.currency:
        raise CurrencyNotSupported(f"This app's revenue is in {app.currency}", currency=currency,
                                   supported=[app.currency])
    try:
        gross = to_minor(body.gross_revenue, currency)
        most = to_minor(rt.settings.max_payment_amount, currency)
    except MoneyError as exc:
        raise InvalidAmount(str(exc), field="gross_revenue") from None
    if gross <= 0:
        raise InvalidAmount("gross_revenue must be greater than zero", field="gross_revenue")
    if gross > most:
        raise InvalidAmount(f"the maximum gross_revenue is {to_major(most, currency)} {currency}",
                            field="gross_revenue")
    as_of = holdings_instant(body.period, utcnow())
    investor_shares = sum(shares for _, shares in await investor_holdings(session, app, as_of))
    pool = share_rounded_down(gross, investor_shares, app.total_shares)
    minimum = currency_info(currency).minimum_minor
    if 0 < pool < minimum:
        raise InvalidAmount("The investors' pool is below the smallest amount the gateway collects",
                            pool=to_major(pool, currency), minimum=to_major(minimum, currency))
    # Refused before a checkout is opened; checked again under the row's lock when written.
    _check_replaceable(await live_declaration(session, app.id, body.period, currency))
    return Draft(app=app, period=body.period, currency=currency, gross_revenue=gross,
                 investor_shares=investor_shares, pool=pool, holdings_as_of=as_of, created_by=principal.user_id)


async def record_declaration(session: AsyncSession, draft: Draft, payment: Payment | None) -> RevenueDeclaration:
    """Write the declaration (with the payment that collects its pool, if any), replacing the live one of its
    period. Declarations of one period written at the same time replace each other in turn: the unique
    constraint lets one in at a time, and the next finds it and replaces it."""
    declaration = RevenueDeclaration(
        id=new_id("rvd"), app_id=draft.app.id, period=draft.period, currency=draft.currency,
        gross_revenue=draft.gross_revenue, investor_shares=draft.investor_shares,
        total_shares=draft.app.total_shares, pool=draft.pool, holdings_as_of=draft.holdings_as_of,
        status=_D.PENDING if payment is not None else _D.RECORDED, live=True,
        payment_id=payment.id if payment else None, payment_reference=payment.reference if payment else None,
        payment_url=payment.authorization_url if payment else None, created_by=draft.created_by,
    )
    for _ in range(WRITE_ATTEMPTS):
        live = await live_declaration(session, draft.app.id, draft.period, draft.currency, for_update=True)
        if live is not None:
            _check_replaceable(live)
            advance(live, _D.REPLACED)
            live.live = None
            live.replaced_by = declaration.id
            declaration.replaces = live.id
            await session.flush()
        try:
            async with session.begin_nested():
                session.add(declaration)
                await session.flush()
        except IntegrityError:
            continue  # another declaration of the period got in first: replace it in turn
        return declaration
    raise InvalidState("Other declarations of this period are being written at this moment; try again",
                       period=draft.period)


async def list_declarations(session: AsyncSession, principal: Principal, app_id: str,
                            params: PageParams) -> tuple[Sequence[RevenueDeclaration], str | None]:
    app = await get_app(session, app_id)
    require(manages(app, principal), "Only the app's owner or an admin sees its revenue declarations")
    stmt = select(RevenueDeclaration).where(RevenueDeclaration.app_id == app_id)
    return await fetch_page(session, stmt, RevenueDeclaration.id, params)


class RevenueDeclarationPayment:
    """The payment type of a declaration's pool: opened by the declaration (never by POST /v1/payments);
    its success distributes the pool over the investors, once."""

    name = PAYMENT_TYPE

    async def plan(self, session: AsyncSession, rt: Runtime, principal: Principal,
                   request: PaymentCreate) -> PaymentPlan:
        raise ValidationFailed("A declaration's payment is made by POST /v1/apps/{app_id}/revenue-declarations")

    async def fulfil(self, session: AsyncSession, rt: Runtime, payments: Sequence[Payment]) -> None:
        declarations = {
            d.payment_id: d for d in (await session.scalars(
                select(RevenueDeclaration).where(RevenueDeclaration.payment_id.in_([p.id for p in payments]))
                .order_by(RevenueDeclaration.id).with_for_update().execution_options(populate_existing=True)
            )).all()
        }
        for payment in payments:
            declaration = declarations.get(payment.id)
            if declaration is None or declaration.status != _D.PENDING:
                await self._refund(session, rt, payment)
            else:
                await self._distribute(session, rt, payment, declaration)

    @staticmethod
    async def _refund(session: AsyncSession, rt: Runtime, payment: Payment) -> None:
        """A replaced declaration's checkout paid after all: the whole payment goes back to the owner."""
        log.info("revenue declaration of %s was replaced; refunding", payment.reference)
        payment.outcome_note = "revenue declaration replaced; refunded"
        await queue_refund(session, payment, amount=payment.amount,
                           source_account=accounts.gateway(payment.currency),
                           return_account=accounts.payable(payment.user_id, payment.currency),
                           reason="revenue declaration replaced")
        rt.notify_worker()

    @staticmethod
    async def _distribute(session: AsyncSession, rt: Runtime, payment: Payment,
                          declaration: RevenueDeclaration) -> None:
        """The pool comes in (`revenue`) and goes out to the investors who held the shares at the declaration's
        instant (`distribution`: the platform fee first, the rest by largest remainder)."""
        advance(declaration, _D.PAID)
        declaration.paid_at = payment.paid_at or utcnow()
        currency = declaration.currency
        await post_entries(session, [Entry(
            "revenue", move(accounts.gateway(currency), accounts.revenue(declaration.app_id, currency), payment.amount),
            idempotency_key=f"revenue:{payment.reference}", memo=f"revenue declaration {declaration.id}")])
        app = await get_app(session, declaration.app_id)
        holders = await investor_holdings(session, app, declaration.holdings_as_of)
        if sum(shares for _, shares in holders) != declaration.investor_shares:
            # a share movement stamped before the declaration's instant but committed after it was read
            log.warning("declaration %s: investor shares now read %s, declared on %s", declaration.id,
                        sum(shares for _, shares in holders), declaration.investor_shares)
        recipients: dict[str, str] = {}
        for start in range(0, len(holders), RECIPIENTS_PER_QUERY):
            recipients |= await payout_recipients(
                session, [user_id for user_id, _ in holders[start:start + RECIPIENTS_PER_QUERY]], currency)
        plan = split(app, currency, payment.amount, holders, recipients)
        # Made by the service when the pool's payment succeeded; the declaration keeps who declared it.
        distribution = await write_distribution(session, rt, AUTOMATION, plan, declaration.period,
                                                source=declaration.id)
        declaration.distribution_id = distribution.id
