"""Holdings: shares issued on investment, cancelled on full refund, moved by transfers.

Every change is also written as a share movement, so the cap table at any past
instant can be rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidState
from app.models import App, Holding, ShareMovement
from app.models.base import utcnow


class _SoldOut(Exception):
    pass


async def issue_shares(session: AsyncSession, *, app_id: str, user_id: str, shares: int, source_id: str) -> bool:
    """Issue new shares if the app still has them; False when sold out (nothing written).

    The app row is every investment's hot row: the holding and movement are written first,
    and the app's shares are claimed last, so that row stays locked only until the commit.
    """
    if session.bind.dialect.name == "postgresql":
        return await _issue_shares_postgres(session, app_id, user_id, shares, source_id)
    try:
        async with session.begin_nested():
            await credit_holding(session, app_id=app_id, user_id=user_id, shares=shares)
            session.add(ShareMovement(app_id=app_id, from_user_id=None, to_user_id=user_id, shares=shares,
                                      kind="issue", source_id=source_id, created_at=utcnow()))
            await session.flush()
            claimed = await session.execute(
                update(App)
                .where(App.id == app_id, App.shares_issued + shares <= App.total_shares)
                .values(shares_issued=App.shares_issued + shares)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:
                raise _SoldOut
    except _SoldOut:
        return False
    return True


# Claim the app's shares, credit the holding and record the movement in one statement: nothing is
# written when the shares are sold out, and the app row is locked from here to the commit only.
_ISSUE_SQL = text("""
WITH claim AS (
    UPDATE apps SET shares_issued = shares_issued + :shares
    WHERE id = :app AND shares_issued + :shares <= total_shares
    RETURNING id
),
holding AS (
    INSERT INTO holdings (app_id, user_id, shares, reserved_shares, acquired_at, updated_at)
    SELECT id, :user, :shares, 0, :now, :now FROM claim
    ON CONFLICT (app_id, user_id) DO UPDATE
    SET shares = holdings.shares + EXCLUDED.shares, acquired_at = EXCLUDED.acquired_at, updated_at = EXCLUDED.updated_at
    RETURNING 1
),
movement AS (
    INSERT INTO share_movements (app_id, from_user_id, to_user_id, shares, kind, source_id, created_at)
    SELECT id, NULL, :user, :shares, 'issue', :source, :now FROM claim
    RETURNING 1
)
SELECT (SELECT count(*) FROM claim) + (SELECT count(*) FROM holding) + (SELECT count(*) FROM movement)
""")


async def _issue_shares_postgres(session: AsyncSession, app_id: str, user_id: str, shares: int,
                                 source_id: str) -> bool:
    await session.flush()
    written = await session.scalar(
        _ISSUE_SQL, {"app": app_id, "user": user_id, "shares": shares, "source": source_id, "now": utcnow()}
    )
    return written == 3


async def credit_holding(session: AsyncSession, *, app_id: str, user_id: str, shares: int) -> None:
    """Add shares to a holding, creating it; the lock-in runs from the latest acquisition."""
    now = utcnow()
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(Holding)
        .values(app_id=app_id, user_id=user_id, shares=shares, reserved_shares=0, acquired_at=now, updated_at=now)
        .on_conflict_do_update(
            index_elements=["app_id", "user_id"],
            set_={"shares": Holding.shares + shares, "acquired_at": now, "updated_at": now},
        )
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
