"""Distributions: an app's revenue for a period shared out over its holders, to the kobo.

The platform fee goes to `platform:fees`; the rest is split by shares with the
largest-remainder method, written as one journal entry `revenue:app ->
payable:user:*`, one allocation row per holder, and one payout per holder with
money due (sent once the holder has a payout account).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import manages, require
from app.apps.service import check_currency, get_app
from app.core.db import bulk_insert, fetch_plain_rows
from app.core.errors import CurrencyNotSupported, InsufficientFunds, InvalidAmount, InvalidState, NotFound
from app.core.memory import collector_paused
from app.core.money import MoneyError, allocate, percentage_of, to_major, to_minor
from app.core.schemas import PageParams
from app.core.security import Principal
from app.distributions.schemas import AllocationOut, DistributionIn, DistributionOut, MyAllocationOut
from app.events.record import emit
from app.ledger import accounts
from app.ledger.service import post
from app.models import (
    App,
    Distribution,
    DistributionAllocation,
    Holding,
    Payment,
    Payout,
    PayoutAccount,
    audit,
)
from app.models.base import new_id, new_ids, utcnow
from app.models.distributions import REVENUE_PAYMENTS
from app.payouts.service import SHOWN_STATUS, new_payout_references
from app.runtime import Runtime

# Payout ids are drawn for this many holders at a time, while the payouts' COPY runs (`new_ids` keeps them
# ascending from one draw to the next).
HOLDERS_PER_STEP = 4096


@dataclass(frozen=True)
class Plan:
    app: App
    currency: str
    amount: int
    platform_fee: int
    holders: list[tuple[str, int]]  # (user_id, shares), in user id order
    parts: list[int]
    recipients: dict[str, str]  # user_id -> transfer recipient, for holders with a payout account

    @property
    def net_amount(self) -> int:
        return self.amount - self.platform_fee


async def revenue_collected(session: AsyncSession, app_id: str, period: str, currency: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Payment.amount - Payment.refunded_amount), 0)).where(
            Payment.app_id == app_id, Payment.payment_type == "revenue", Payment.period == period,
            Payment.currency == currency, Payment.status.in_(("success", "partially_refunded")),
        )
    )
    return int(total or 0)


async def plan_distribution(session: AsyncSession, rt: Runtime, principal: Principal, app_id: str,
                            body: DistributionIn) -> Plan:
    app = await get_app(session, app_id)
    require(manages(app, principal), "Only the app's owner or an admin distributes its revenue")
    return await plan_for_app(session, rt, app, body)


async def plan_for_app(session: AsyncSession, rt: Runtime, app: App, body: DistributionIn) -> Plan:
    """The distribution `body` asks for, of an app the caller may distribute (checked by the caller)."""
    app_id = app.id
    currency = check_currency(rt.settings, body.currency)
    existing = await session.scalar(select(Distribution.id).where(
        Distribution.app_id == app_id, Distribution.period == body.period, Distribution.currency == currency,
        Distribution.source == REVENUE_PAYMENTS))
    if existing is not None:
        raise InvalidState("This period's revenue was already distributed", distribution_id=existing)
    if currency != app.currency:
        raise CurrencyNotSupported(f"This app's revenue is in {app.currency}", supported=[app.currency])
    undistributed = await revenue_collected(session, app_id, body.period, currency)
    try:
        amount = undistributed if body.amount is None else to_minor(body.amount, currency)
    except MoneyError as exc:
        raise InvalidAmount(str(exc)) from None
    if amount <= 0:
        raise InvalidAmount("There is no revenue to distribute for this period", period=body.period)
    if amount > undistributed:
        raise InsufficientFunds("That is more than the revenue paid in for this period",
                                undistributed=to_major(undistributed, currency))
    with collector_paused():
        # A cap table can hold 100,000 rows: read as plain rows, without ORM or SQLAlchemy result rows.
        rows = await fetch_plain_rows(session, (
            select(Holding.user_id, Holding.shares, PayoutAccount.recipient_code)
            .outerjoin(PayoutAccount, (PayoutAccount.user_id == Holding.user_id)
                       & (PayoutAccount.currency == currency) & PayoutAccount.is_default)
            .where(Holding.app_id == app_id, Holding.shares > 0).order_by(Holding.user_id)
        ))
        holders = [(user_id, int(shares)) for user_id, shares, _ in rows]
        recipients = {user_id: code for user_id, _, code in rows if code is not None}
        if not holders:
            raise InvalidState("The app has no shareholders to distribute to")
        return split(app, currency, amount, holders, recipients)


def split(app: App, currency: str, amount: int, holders: list[tuple[str, int]], recipients: dict[str, str]) -> Plan:
    """`amount` shared out: the app's platform fee first, the rest over `holders` (user_id, shares) by
    largest remainder."""
    fee = percentage_of(amount, app.platform_fee_hundredths)
    parts = allocate(amount - fee, [shares for _, shares in holders])
    return Plan(app=app, currency=currency, amount=amount, platform_fee=fee, holders=holders, parts=parts,
                recipients=recipients)


async def write_distribution(session: AsyncSession, rt: Runtime, principal: Principal, plan: Plan, period: str,
                             source: str = REVENUE_PAYMENTS) -> Distribution:
    """The distribution row, its allocations and payouts, and the `distribution` journal entry taking
    `plan.amount` out of the app's revenue account, audited as `principal`'s. `source`: the period's revenue
    payments, or the revenue declaration whose pool this is (one distribution per app, period, currency and
    source)."""
    with collector_paused():
        return await _write_distribution(session, rt, principal, plan, period, source)


async def _write_distribution(session: AsyncSession, rt: Runtime, principal: Principal, plan: Plan, period: str,
                              source: str) -> Distribution:
    distribution = Distribution(
        id=new_id("dst"), app_id=plan.app.id, period=period, currency=plan.currency, source=source,
        amount=plan.amount, platform_fee=plan.platform_fee, net_amount=plan.net_amount,
        allocations=len(plan.holders), total_shares=sum(shares for _, shares in plan.holders), status="completed",
        created_by=principal.user_id, created_at=utcnow(),
    )
    session.add(distribution)
    try:
        await session.flush()
    except IntegrityError:
        raise InvalidState("This period's revenue was already distributed") from None

    distribution_id, currency, recipients = distribution.id, plan.currency, plan.recipients
    payouts = sum(1 for part in plan.parts if part > 0)
    # Drawn at once and sorted: the payouts go into the references' unique index in key order.
    references = iter(new_payout_references(payouts))
    allocation_rows: list[tuple[object, ...]] = []
    # The ledger's legs as plain (account, amount) pairs: cheaper to build than 100,000 `Leg`s (measured).
    legs = [(accounts.revenue(plan.app.id, currency), -plan.amount)]
    if plan.platform_fee:
        legs.append((accounts.platform_fees(currency), plan.platform_fee))

    def payout_rows() -> Iterator[tuple[object, ...]]:
        """One pass over the holders: a payout and a ledger leg for each one owed money, an allocation for
        each. The payouts' COPY runs it as it sends them, so PostgreSQL writes payouts while the next are
        built. Their times are left to the database (`Payout.created_at`)."""
        for start in range(0, len(plan.holders), HOLDERS_PER_STEP):
            parts = plan.parts[start:start + HOLDERS_PER_STEP]
            payout_ids = iter(new_ids("po", sum(1 for part in parts if part > 0)))
            for (user_id, shares), part in zip(plan.holders[start:start + HOLDERS_PER_STEP], parts, strict=True):
                payout_id = None
                if part > 0:
                    payout_id = next(payout_ids)
                    yield (payout_id, user_id, part, currency, "pending", next(references), "distribution",
                           distribution_id, recipients.get(user_id), 0)
                    legs.append((accounts.payable(user_id, currency), part))
                allocation_rows.append((distribution_id, user_id, shares, part, payout_id))

    await bulk_insert(
        session, Payout.__table__,
        ("id", "user_id", "amount", "currency", "status", "reference", "reason", "source_id", "recipient_code",
         "attempts"),
        payout_rows(),
    )
    await bulk_insert(session, DistributionAllocation.__table__,
                      ("distribution_id", "user_id", "shares", "amount", "payout_id"), allocation_rows)
    await post(session, kind="distribution", legs=legs, idempotency_key=f"distribution:{distribution_id}",
               memo=f"distribution {plan.app.id} {period}")
    audit.record(session, principal, "distribution.created", "distribution", distribution_id, {
        "app_id": plan.app.id, "period": period, "currency": plan.currency, "amount": plan.amount,
        "platform_fee": plan.platform_fee, "allocations": len(plan.holders), "payouts": payouts,
    })
    emit(session, "distribution.created", DistributionOut.model_validate(distribution),
         subjects=[plan.app.owner_id, principal.user_id])
    rt.notify_worker()
    return distribution


def plan_out(plan: Plan, period: str) -> DistributionOut:
    cur = plan.currency
    return DistributionOut(
        id=None, app_id=plan.app.id, period=period, currency=cur, amount=to_major(plan.amount, cur),
        platform_fee=to_major(plan.platform_fee, cur), net_amount=to_major(plan.net_amount, cur),
        allocations=len(plan.holders), total_shares=sum(s for _, s in plan.holders), status="dry_run",
        dry_run=True, created_at=None,
        preview=[AllocationOut(user_id=u, shares=s, amount=to_major(p, cur), payout_status=None)
                 for (u, s), p in list(zip(plan.holders, plan.parts, strict=True))[:50]],
    )


async def get_distribution(session: AsyncSession, principal: Principal, distribution_id: str) -> Distribution:
    distribution = await session.get(Distribution, distribution_id)
    if distribution is None:
        raise NotFound("Distribution not found", distribution_id=distribution_id)
    app = await get_app(session, distribution.app_id)
    if not manages(app, principal):
        raise NotFound("Distribution not found", distribution_id=distribution_id)
    return distribution


async def list_allocations(session: AsyncSession, distribution: Distribution,
                           params: PageParams) -> tuple[list[AllocationOut], str | None]:
    stmt = (
        select(DistributionAllocation, SHOWN_STATUS)
        .outerjoin(Payout, Payout.id == DistributionAllocation.payout_id)
        .where(DistributionAllocation.distribution_id == distribution.id)
    )
    if params.cursor:
        stmt = stmt.where(DistributionAllocation.user_id > params.cursor)
    rows = (await session.execute(stmt.order_by(DistributionAllocation.user_id).limit(params.limit + 1))).all()
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    cur = distribution.currency
    items = [AllocationOut(user_id=a.user_id, shares=a.shares, amount=to_major(a.amount, cur),
                           payout_status=status) for a, status in rows]
    return items, (items[-1].user_id if more and items else None)


async def list_app_distributions(session: AsyncSession, principal: Principal, app_id: str) -> Sequence[Distribution]:
    app = await get_app(session, app_id)
    require(manages(app, principal), "Only the app's owner or an admin sees its distributions")
    return (await session.scalars(
        select(Distribution).where(Distribution.app_id == app_id).order_by(Distribution.period.desc())
    )).all()


async def my_allocations(session: AsyncSession, principal: Principal,
                         params: PageParams) -> tuple[list[MyAllocationOut], str | None]:
    stmt = (
        select(DistributionAllocation, Distribution, SHOWN_STATUS)
        .join(Distribution, Distribution.id == DistributionAllocation.distribution_id)
        .outerjoin(Payout, Payout.id == DistributionAllocation.payout_id)
        .where(DistributionAllocation.user_id == principal.user_id)
    )
    if params.cursor:
        stmt = stmt.where(Distribution.id < params.cursor)
    rows = (await session.execute(stmt.order_by(Distribution.id.desc()).limit(params.limit + 1))).all()
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    items = [
        MyAllocationOut(distribution_id=d.id, app_id=d.app_id, period=d.period, shares=a.shares,
                        amount=to_major(a.amount, d.currency), currency=d.currency, payout_status=status)
        for a, d, status in rows
    ]
    return items, (items[-1].distribution_id if more and items else None)
