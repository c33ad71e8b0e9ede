"""Milestones: what an app's owner must deliver before escrowed money is released."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import is_owner, manages, require
from app.apps.service import get_app
from app.core.errors import InvalidState, ValidationFailed
from app.core.money import FULL_PERCENT, format_percentage, parse_percentage
from app.core.repository import get_or_404
from app.core.security import Principal
from app.escrow.schemas import MilestoneIn
from app.models import App, Milestone, audit
from app.models.base import new_id, utcnow
from app.models.statuses import MilestoneStatus, advance


async def create_milestone(session: AsyncSession, principal: Principal, app_id: str, body: MilestoneIn) -> Milestone:
    app = await get_app(session, app_id, for_update=True)  # serialises the 100% check per app
    require(manages(app, principal), "Only the app's owner or an admin adds milestones")
    percentage = parse_percentage(body.release_percentage)
    used = await session.scalar(
        select(func.coalesce(func.sum(Milestone.release_percentage), 0)).where(Milestone.app_id == app_id)
    )
    if used + percentage > FULL_PERCENT:
        raise ValidationFailed(
            "The app's milestones would add up to more than 100%",
            allocated=format_percentage(int(used)),
            remaining=format_percentage(FULL_PERCENT - int(used)),
        )
    milestone = Milestone(
        id=new_id("ms"), app_id=app_id, title=body.title, description=body.description,
        release_percentage=percentage, due_date=body.due_date, status="pending",
    )
    session.add(milestone)
    audit.record(session, principal, "milestone.created", "milestone", milestone.id, {
        "app_id": app_id, "release_percentage": body.release_percentage,
        "due_date": body.due_date.isoformat() if body.due_date else None,
    })
    await session.flush()
    return milestone


async def list_milestones(session: AsyncSession, app_id: str) -> Sequence[Milestone]:
    await get_app(session, app_id)
    return (await session.scalars(select(Milestone).where(Milestone.app_id == app_id).order_by(Milestone.id))).all()


async def get_milestone(session: AsyncSession, milestone_id: str, *, for_update: bool = False) -> tuple[Milestone, App]:
    milestone = await get_or_404(session, Milestone, milestone_id, for_update=for_update)
    return milestone, await get_app(session, milestone.app_id)


async def complete_milestone(
    session: AsyncSession, principal: Principal, milestone_id: str, evidence: str
) -> Milestone:
    milestone, app = await get_milestone(session, milestone_id, for_update=True)
    require(is_owner(app, principal), "Only the app's owner completes its milestones")
    if milestone.status != "pending":
        raise InvalidState("Only a pending milestone can be completed", status=milestone.status)
    advance(milestone, MilestoneStatus.COMPLETED)
    milestone.evidence = evidence
    milestone.completed_at = utcnow()
    return milestone


async def mark_overdue(session: AsyncSession, today: date, now: datetime) -> list[Milestone]:
    """Pending milestones whose due date is before `today`, flagged overdue by this call: the guarded UPDATE
    (`overdue_at IS NULL`) flags each once, however many workers run it at once (PostgreSQL re-checks the
    condition on a row another transaction just changed), so what it returns is each one's only time."""
    ids = (await session.scalars(
        update(Milestone)
        .where(Milestone.status == MilestoneStatus.PENDING, Milestone.due_date < today, Milestone.overdue_at.is_(None))
        .values(overdue_at=now)
        .returning(Milestone.id)
    )).all()
    if not ids:
        return []
    return list((await session.scalars(select(Milestone).where(Milestone.id.in_(ids)).order_by(Milestone.id))).all())
