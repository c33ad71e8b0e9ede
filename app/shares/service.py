"""Holdings: shares issued on investment, cancelled on full refund, moved by transfers.

Every change is also written as a share movement, so the cap table at any past
instant can be rebuilt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import manages, require
from app.apps.service import get_app
from app.core.db import insert_on_conflict
from app.core.errors import InvalidState
from app.core.money import FULL_PERCENT, allocate, format_percentage
from app.core.security import Principal
from app.models import App, Holding, ShareMovement
from app.models.base import utcnow
from app.shares.schemas import CapTableItem, CapTableOut


@dataclass(frozen=True)
class Grant:
    user_id: str
    shares: int
    source_id: str  # the payment that bought them


async def issue_shares(session: AsyncSession, *, app_id: str, grants: Sequence[Grant]) -> tuple[App, list[bool]]:
    """Issue new shares for each grant, in order, while the app still has them; False for a grant
    that no longer fits (nothing is written for it). Returns the app, whose row stays locked until the
    commit, with those flags."""
    app = await session.scalar(
        select(App).where(App.id == app_id).with_for_update().execution_options(populate_existing=True))
    if app is None:
        raise InvalidState("App not found", app_id=app_id)
    available = app.total_shares - app.shares_issued
    issued = []
    for grant in grants:
        issued.append(grant.shares <= available)
        if issued[-1]:
            available -= grant.shares
    granted = [grant for grant, ok in zip(grants, issued, strict=True) if ok]
    if not granted:
        return app, issued
    per_user: dict[str, int] = defaultdict(int)
    for grant in granted:
        per_user[grant.user_id] += grant.shares
    await credit_holdings(session, app_id=app_id, shares=per_user)
    now = utcnow()
    # one INSERT for the batch: these rows are only appended, never read back in this transaction
    await session.execute(insert(ShareMovement.__table__), [
        {"app_id": app_id, "from_user_id": None, "to_user_id": grant.user_id, "shares": grant.shares,
         "kind": "issue", "source_id": grant.source_id, "created_at": now} for grant in granted])
    app.shares_issued += sum(per_user.values())
    await session.flush()
    return app, issued


async def credit_holding(session: AsyncSession, *, app_id: str, user_id: str, shares: int) -> None:
    """Add shares to a holding, creating it; the lock-in runs from the latest acquisition."""
    await credit_holdings(session, app_id=app_id, shares={user_id: shares})


async def credit_holdings(session: AsyncSession, *, app_id: str, shares: dict[str, int]) -> None:
    """`credit_holding` for several users (user_id -> shares) in one statement."""
    now = utcnow()
    # the table, not the entity: no ORM bulk bookkeeping per row
    statement = insert_on_conflict(session, Holding.__table__)
    # parameter sets rather than one VALUES list: compiled once for any number of holders
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["app_id", "user_id"],
            set_={"shares": statement.table.c.shares + statement.excluded.shares, "acquired_at": now,
                  "updated_at": now},
        ),
        [{"app_id": app_id, "user_id": user_id, "shares": count, "reserved_shares": 0, "acquired_at": now,
          "updated_at": now}
         for user_id, count in sorted(shares.items())],  # rows locked in one order by every caller
    )


async def reserve_shares(session: AsyncSession, *, app_id: str, user_id: str, shares: int) -> None:
    """Hold shares back (offered for sale, or about to be cancelled by a refund)."""
    reserved = await session.execute(
        update(Holding)
        .where(Holding.app_id == app_id, Holding.user_id == user_id,
               Holding.shares - Holding.reserved_shares >= shares)
        .values(reserved_shares=Holding.reserved_shares + shares, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if reserved.rowcount != 1:
        raise InvalidState("The investor no longer holds these shares unreserved", shares=shares)


async def unreserve_shares(session: AsyncSession, *, app_id: str, user_id: str, shares: int) -> None:
    await session.execute(
        update(Holding)
        .where(Holding.app_id == app_id, Holding.user_id == user_id, Holding.reserved_shares >= shares)
        .values(reserved_shares=Holding.reserved_shares - shares, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def cancel_reserved_shares(
    session: AsyncSession, *, app_id: str, user_id: str, shares: int, source_id: str
) -> None:
    """Take back reserved shares for good (a fully refunded investment); they can be sold again."""
    cancelled = await session.execute(
        update(Holding)
        .where(Holding.app_id == app_id, Holding.user_id == user_id, Holding.reserved_shares >= shares)
        .values(shares=Holding.shares - shares, reserved_shares=Holding.reserved_shares - shares,
                updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if cancelled.rowcount != 1:
        raise InvalidState("The reserved shares are gone", shares=shares)
    await session.execute(
        update(App).where(App.id == app_id).values(shares_issued=App.shares_issued - shares)
        .execution_options(synchronize_session=False)
    )
    session.add(ShareMovement(app_id=app_id, from_user_id=user_id, to_user_id=None, shares=shares,
                              kind="cancel", source_id=source_id, created_at=utcnow()))
    await session.flush()


async def holdings_of(session: AsyncSession, user_id: str) -> Sequence[Holding]:
    return (
        await session.scalars(
            select(Holding).where(Holding.user_id == user_id, Holding.shares > 0).order_by(Holding.app_id)
        )
    ).all()


async def cap_table(session: AsyncSession, app_id: str, as_of: datetime | None = None) -> list[tuple[str, int]]:
    """Holders and their shares now, or rebuilt from the share movements as of an instant."""
    if as_of is None:
        rows = await session.execute(
            select(Holding.user_id, Holding.shares)
            .where(Holding.app_id == app_id, Holding.shares > 0).order_by(Holding.user_id)
        )
        return [(user_id, int(shares)) for user_id, shares in rows.all()]
    movements = await session.execute(
        select(ShareMovement.from_user_id, ShareMovement.to_user_id, ShareMovement.shares)
        .where(ShareMovement.app_id == app_id, ShareMovement.created_at <= as_of)
    )
    totals: dict[str, int] = {}
    for source, target, shares in movements.all():
        if source is not None:
            totals[source] = totals.get(source, 0) - shares
        if target is not None:
            totals[target] = totals.get(target, 0) + shares
    return sorted((user_id, shares) for user_id, shares in totals.items() if shares > 0)


PERCENTAGE_ROUNDING = "largest remainder over hundredths of a percent, so the percentages add up to exactly 100.00"


async def cap_table_of(
    session: AsyncSession, principal: Principal, app_id: str, as_of: datetime | None = None
) -> CapTableOut:
    """The app's holders and their percentages, now or `as_of` an earlier instant; its owner's or an admin's."""
    app = await get_app(session, app_id)
    require(manages(app, principal), "Only the app's owner or an admin sees its cap table")
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)  # a time without an offset is UTC, as everywhere in the service
    holders = await cap_table(session, app_id, as_of)
    issued = sum(shares for _, shares in holders)
    hundredths = allocate(FULL_PERCENT, [shares for _, shares in holders]) if issued else []
    return CapTableOut(
        app_id=app_id, total_shares=app.total_shares, shares_issued=issued if as_of else app.shares_issued,
        as_of=as_of, percentage_rounding=PERCENTAGE_ROUNDING,
        items=[CapTableItem(user_id=user_id, shares=shares, percentage=format_percentage(pct))
               for (user_id, shares), pct in zip(holders, hundredths, strict=True)],
    )
