"""Monthly revenue report: per month of the revenue's period, what owners declared, what came in, was shared
out, paid and is owed."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import is_owner
from app.apps.service import check_currency, get_app
from app.core.config import Settings
from app.core.errors import Unauthorized, ValidationFailed
from app.core.money import to_major
from app.core.security import Principal
from app.distributions.declarations import PAYMENT_TYPE
from app.distributions.schemas import MonthlyRevenueItem, MonthlyRevenueReport
from app.models import Distribution, DistributionAllocation, Payment, Payout, RevenueDeclaration

FIELDS = ("revenue_collected", "distributed", "platform_fees", "paid_out", "owed", "recipients",
          "declared_gross_revenue", "investor_pool")
# Payments that bring in revenue to share out: paid directly, or a declaration's pool.
REVENUE_TYPES = ("revenue", PAYMENT_TYPE)


async def monthly_revenue(session: AsyncSession, settings: Settings, principal: Principal, year: int,
                          app_id: str | None, currency: str | None) -> MonthlyRevenueReport:
    if not principal.is_admin:
        if app_id is None:
            raise Unauthorized("Admins see every app; an app's owner names the app (app_id)")
        if not is_owner(await get_app(session, app_id), principal):
            raise Unauthorized("Only the app's owner or an admin sees its revenue")
    elif app_id is not None:
        await get_app(session, app_id)
    if not 2000 <= year <= 2200:
        raise ValidationFailed("year is out of range")
    if currency is not None:
        currency = check_currency(settings, currency)
    periods = [f"{year}-{month:02d}" for month in range(1, 13)]
    figures: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))

    def scoped(stmt, model):  # type: ignore[no-untyped-def]
        if app_id is not None:
            stmt = stmt.where(model.app_id == app_id)
        if currency is not None:
            stmt = stmt.where(model.currency == currency)
        return stmt

    revenue = scoped(
        select(Payment.period, Payment.currency, func.sum(Payment.amount - Payment.refunded_amount))
        .where(Payment.payment_type.in_(REVENUE_TYPES), Payment.period.in_(periods),
               Payment.status.in_(("success", "partially_refunded", "refunded")))
        .group_by(Payment.period, Payment.currency),
        Payment,
    )
    for period, cur, total in (await session.execute(revenue)).all():
        figures[(period, cur)]["revenue_collected"] += int(total)

    declared = scoped(
        select(RevenueDeclaration.period, RevenueDeclaration.currency, func.sum(RevenueDeclaration.gross_revenue),
               func.sum(RevenueDeclaration.pool))
        .where(RevenueDeclaration.live.is_(True), RevenueDeclaration.period.in_(periods))
        .group_by(RevenueDeclaration.period, RevenueDeclaration.currency),
        RevenueDeclaration,
    )
    for period, cur, gross, pool in (await session.execute(declared)).all():
        figures[(period, cur)]["declared_gross_revenue"] += int(gross)
        figures[(period, cur)]["investor_pool"] += int(pool)

    distributed = scoped(
        select(Distribution.period, Distribution.currency, func.sum(Distribution.net_amount),
               func.sum(Distribution.platform_fee))
        .where(Distribution.period.in_(periods)).group_by(Distribution.period, Distribution.currency),
        Distribution,
    )
    for period, cur, net, fees in (await session.execute(distributed)).all():
        figures[(period, cur)]["distributed"] += int(net)
        figures[(period, cur)]["platform_fees"] += int(fees)

    allocations = scoped(
        select(
            Distribution.period, Distribution.currency,
            func.sum(func.coalesce(Payout.amount, 0)).filter(Payout.status == "paid"),
            func.count().filter(DistributionAllocation.amount > 0),
        )
        .join(Distribution, Distribution.id == DistributionAllocation.distribution_id)
        .outerjoin(Payout, Payout.id == DistributionAllocation.payout_id)
        .where(Distribution.period.in_(periods))
        .group_by(Distribution.period, Distribution.currency),
        Distribution,
    )
    for period, cur, paid, recipients in (await session.execute(allocations)).all():
        figures[(period, cur)]["paid_out"] += int(paid or 0)
        figures[(period, cur)]["recipients"] += int(recipients or 0)

    currencies = sorted({cur for _, cur in figures} | ({currency} if currency else set()))
    if not currencies and app_id is not None:
        currencies = [(await get_app(session, app_id)).currency]
    items = []
    for cur in currencies:
        for period in periods:
            row = figures[(period, cur)]
            items.append(MonthlyRevenueItem(
                month=period, currency=cur, revenue_collected=to_major(row["revenue_collected"], cur),
                distributed=to_major(row["distributed"], cur), platform_fees=to_major(row["platform_fees"], cur),
                paid_out=to_major(row["paid_out"], cur), owed=to_major(row["distributed"] - row["paid_out"], cur),
                recipients=row["recipients"],
                declared_gross_revenue=to_major(row["declared_gross_revenue"], cur),
                investor_pool=to_major(row["investor_pool"], cur),
            ))
    return MonthlyRevenueReport(year=year, app_id=app_id, items=items)


def report_csv(report: MonthlyRevenueReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = list(MonthlyRevenueItem.model_fields)
    writer.writerow(columns)
    for item in report.items:
        writer.writerow([getattr(item, column) for column in columns])
    return out.getvalue()
