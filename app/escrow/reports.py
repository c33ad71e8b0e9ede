"""What an app's escrow holds, and its statement to the kobo."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import oversees, require
from app.apps.service import get_app
from app.core.errors import ValidationFailed
from app.core.money import to_major
from app.core.security import Principal
from app.escrow.schemas import EscrowSummary, EscrowSummaryItem, Statement, StatementLine
from app.models import EscrowTransaction

# Refunds that failed put the money back: they never left escrow.
COUNTED = EscrowTransaction.status != "failed"


async def _overseen_app(session: AsyncSession, principal: Principal, app_id: str) -> None:
    app = await get_app(session, app_id)
    # apps are visible to everyone: reading one's escrow without overseeing it is 403, not 404
    require(oversees(app, principal), "Only the app's owner, its approvers or an admin read its escrow")


async def summary(session: AsyncSession, principal: Principal, app_id: str) -> EscrowSummary:
    await _overseen_app(session, principal, app_id)
    rows = (
        await session.execute(
            select(
                EscrowTransaction.currency,
                func.sum(EscrowTransaction.amount),
                func.sum(EscrowTransaction.released),
                func.sum(EscrowTransaction.refunded),
                func.sum(EscrowTransaction.frozen),
            )
            .where(EscrowTransaction.app_id == app_id, EscrowTransaction.type == "deposit")
            .group_by(EscrowTransaction.currency)
            .order_by(EscrowTransaction.currency)
        )
    ).all()
    items = []
    for cur, *sums in rows:
        deposited, released, refunded, frozen = (int(value) for value in sums)  # PostgreSQL sums are NUMERIC
        held = deposited - released - refunded
        items.append(EscrowSummaryItem(
            currency=cur, deposited=to_major(deposited, cur), released=to_major(released, cur),
            refunded=to_major(refunded, cur), held=to_major(held, cur), frozen=to_major(frozen, cur),
            available=to_major(held - frozen, cur),
        ))
    return EscrowSummary(app_id=app_id, items=items)


def _signed(tx: EscrowTransaction) -> int:
    return tx.amount if tx.type == "deposit" else -tx.amount


def _start(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day else None


async def statement(
    session: AsyncSession, principal: Principal, app_id: str, from_date: date | None, to_date: date | None
) -> Statement:
    await _overseen_app(session, principal, app_id)
    if from_date and to_date and from_date > to_date:
        raise ValidationFailed("`from` must not be after `to`")
    app = await get_app(session, app_id)
    start = _start(from_date)
    end = _start(to_date + timedelta(days=1)) if to_date else None
    base = select(EscrowTransaction).where(EscrowTransaction.app_id == app_id, COUNTED,
                                           EscrowTransaction.currency == app.currency)
    opening = 0
    if start is not None:
        before = (await session.scalars(base.where(EscrowTransaction.created_at < start))).all()
        opening = sum(_signed(tx) for tx in before)
    period = base
    if start is not None:
        period = period.where(EscrowTransaction.created_at >= start)
    if end is not None:
        period = period.where(EscrowTransaction.created_at < end)
    rows = (await session.scalars(period.order_by(EscrowTransaction.created_at, EscrowTransaction.id))).all()
    balance = opening
    lines = []
    for tx in rows:
        balance += _signed(tx)
        lines.append(StatementLine(date=tx.created_at, type=tx.type, id=tx.id, investor_id=tx.investor_id,
                                   amount=to_major(_signed(tx), tx.currency), balance=to_major(balance, tx.currency)))
    return Statement(
        app_id=app_id, currency=app.currency, from_date=from_date, to_date=to_date,
        opening_balance=to_major(opening, app.currency), items=lines, closing_balance=to_major(balance, app.currency),
    )


def statement_csv(report: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "type", "id", "investor_id", "amount", "balance", "currency"])
    writer.writerow([report.from_date.isoformat() if report.from_date else "", "opening_balance", "", "", "",
                     report.opening_balance, report.currency])
    for line in report.items:
        writer.writerow([line.date.isoformat(), line.type, line.id, line.investor_id, line.amount, line.balance,
                         report.currency])
    writer.writerow([report.to_date.isoformat() if report.to_date else "", "closing_balance", "", "", "",
                     report.closing_balance, report.currency])
    return out.getvalue()
