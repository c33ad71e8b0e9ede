"""Releases: money leaves escrow for a completed milestone after M-of-N approval.

A release is computed and shown when it is asked for; approvers of the app (and
admins) approve or reject it once each; an admin executes it, which moves the
money `escrow:app -> payable:user:{owner}` and queues the owner's payout.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import decides, manages, oversees, require
from app.apps.service import get_app, readable_by
from app.core.errors import FundsFrozen, InsufficientFunds, InvalidState, NotFound, ValidationFailed
from app.core.money import allocate, currency, format_percentage, parse_percentage, percentage_of, to_major
from app.core.repository import get_or_404
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.escrow.milestones import get_milestone
from app.escrow.movements import ReleaseMoney, apply_one, check_can_give
from app.escrow.schemas import ApprovalIn, ApprovalOut, ReleaseIn, ReleaseItemOut, ReleaseOut
from app.events.record import emit
from app.models import App, EscrowTransaction, Milestone, ReleaseApproval, ReleaseItem, ReleaseRequest, audit
from app.models.base import new_id, utcnow
from app.models.statuses import MilestoneStatus, ReleaseStatus, advance
from app.runtime import Runtime

log = logging.getLogger(__name__)

ALREADY_RELEASING = "This milestone is already released (or being released) for this deposit"


async def _deposits_already_releasing(session: AsyncSession, milestone_id: str) -> set[str]:
    """Deposits this milestone already has a live release for: a milestone releases once per deposit."""
    rows = await session.scalars(
        select(ReleaseItem.deposit_id).where(ReleaseItem.milestone_id == milestone_id, ReleaseItem.live.is_(True))
    )
    return set(rows)


async def create_release(
    session: AsyncSession, rt: Runtime, principal: Principal, body: ReleaseIn
) -> ReleaseRequest:
    # The milestone's lock makes concurrent requests for it look at its releases one at a time;
    # the unique live item per (milestone, deposit) is the database's own refusal behind it.
    milestone, app = await get_milestone(session, body.milestone_id, for_update=True)
    require(manages(app, principal), "Only the app's owner or an admin asks for releases")
    if milestone.status not in ("completed", "released"):
        raise InvalidState("The milestone must be completed first", status=milestone.status)
    percentage = parse_percentage(body.release_percentage) if body.release_percentage else milestone.release_percentage
    promised = await session.scalar(
        select(func.coalesce(func.sum(Milestone.release_percentage), 0)).where(Milestone.app_id == app.id)
    )
    if percentage > promised:
        # Milestones never release more of a deposit than they add up to; execution checks it per
        # deposit again, here the request that could never execute is refused at once.
        raise ValidationFailed("release_percentage is more than the app's milestones add up to",
                               release_percentage=format_percentage(percentage),
                               milestones_percentage=format_percentage(int(promised)))
    taken = await _deposits_already_releasing(session, milestone.id)

    stmt = select(EscrowTransaction).where(
        EscrowTransaction.app_id == app.id, EscrowTransaction.type == "deposit",
        EscrowTransaction.currency == app.currency,
    )
    if body.transaction_id:
        deposit = await session.scalar(stmt.where(EscrowTransaction.id == body.transaction_id))
        if deposit is None:
            raise NotFound("Deposit not found for this app", transaction_id=body.transaction_id)
        if deposit.id in taken:
            raise InvalidState(ALREADY_RELEASING, transaction_id=deposit.id)
        deposits: Sequence[EscrowTransaction] = [deposit]
    else:
        candidates = (await session.scalars(stmt.order_by(EscrowTransaction.id))).all()
        deposits = [d for d in candidates if d.id not in taken and d.amount - d.released - d.refunded > 0]
        if not deposits:
            raise InvalidState("No deposit of this app has funds left for this milestone")

    # Each deposit gives the percentage of its original amount; the total is exact.
    total = percentage_of(sum(d.amount for d in deposits), percentage)
    parts = allocate(total, [d.amount for d in deposits])
    items = [(d, part) for d, part in zip(deposits, parts, strict=True) if part > 0]
    if not items:
        raise InvalidState("The release would be zero")
    for deposit, part in items:
        check_can_give(deposit, part)

    threshold = rt.settings.release_threshold(app.currency)
    needs_admin = threshold is None or total >= int(threshold * currency(app.currency).factor)
    release = ReleaseRequest(
        id=new_id("rel"), app_id=app.id, milestone_id=milestone.id, transaction_id=body.transaction_id,
        currency=app.currency, amount=total, release_percentage=percentage,
        required_approvals=app.required_approvals, needs_admin=needs_admin,
        status="pending_approval", requested_by=principal.user_id,
    )
    try:
        async with session.begin_nested():
            session.add(release)
            await session.flush()
            session.add_all(
                ReleaseItem(release_id=release.id, deposit_id=d.id, milestone_id=milestone.id, amount=part, live=True)
                for d, part in items
            )
    except IntegrityError:
        raise InvalidState(ALREADY_RELEASING) from None
    audit.record(session, principal, "release.requested", "release", release.id, {
        "app_id": app.id, "milestone_id": milestone.id, "amount": total, "currency": app.currency,
        "release_percentage": format_percentage(percentage), "deposits": [d.id for d, _ in items],
    })
    await emit_release(session, "release.requested", release, app)
    return release


async def emit_release(session: AsyncSession, event_type: str, release: ReleaseRequest, app: App) -> None:
    """A release event, about the app's owner and its approvers (who decide on it)."""
    await session.flush()
    emit(session, event_type, await release_out(session, release), subjects=[app.owner_id, *app.approvers])


async def get_release(
    session: AsyncSession, principal: Principal, release_id: str, *, for_update: bool = False
) -> tuple[ReleaseRequest, App]:
    release = await get_or_404(session, ReleaseRequest, release_id, for_update=for_update, what="release")
    app = await get_app(session, release.app_id)
    if not oversees(app, principal):
        raise NotFound("Release not found", release_id=release_id)
    return release, app


async def list_releases(
    session: AsyncSession, principal: Principal, params: PageParams, *, app_id: str | None, status: str | None
) -> tuple[Sequence[ReleaseRequest], str | None]:
    stmt = select(ReleaseRequest)
    stmt = where_given(stmt, {ReleaseRequest.app_id: app_id, ReleaseRequest.status: status})
    stmt = await readable_by(session, principal, stmt, app=ReleaseRequest.app_id)
    return await fetch_page(session, stmt, ReleaseRequest.id, params)


async def decide(
    session: AsyncSession, rt: Runtime, principal: Principal, release_id: str, body: ApprovalIn
) -> ReleaseRequest:
    release, app = await get_release(session, principal, release_id, for_update=True)
    require(decides(app, principal), "Only the app's approvers or an admin, never its owner, decide on releases")
    if release.status != "pending_approval":
        raise InvalidState("This release is not waiting for approval", status=release.status)
    already = await session.scalar(
        select(ReleaseApproval.id).where(ReleaseApproval.release_id == release.id,
                                         ReleaseApproval.approver_id == principal.user_id)
    )
    if already is not None:
        raise InvalidState("You have already decided on this release")
    try:
        async with session.begin_nested():
            session.add(ReleaseApproval(release_id=release.id, approver_id=principal.user_id, decision=body.decision,
                                        is_admin=principal.is_admin, note=body.note))
    except IntegrityError:
        raise InvalidState("You have already decided on this release") from None

    if body.decision == "reject":
        advance(release, ReleaseStatus.REJECTED)
        # the milestone may be asked for again for these deposits
        await session.execute(update(ReleaseItem).where(ReleaseItem.release_id == release.id).values(live=None))
        audit.record(session, principal, "release.rejected", "release", release.id,
                     {"app_id": app.id, "note": body.note, "status": release.status})
        await emit_release(session, "release.rejected", release, app)
        return release
    # An approval the owner gave earlier (listed as an approver, or before becoming the owner) never
    # counts: nobody approves money going to themselves.
    approvers_admin = (await session.scalars(
        select(ReleaseApproval.is_admin)
        .where(ReleaseApproval.release_id == release.id, ReleaseApproval.decision == "approve",
               ReleaseApproval.approver_id != app.owner_id)
    )).all()
    count, has_admin = len(approvers_admin), any(approvers_admin)
    if count >= release.required_approvals and (not release.needs_admin or has_admin):
        advance(release, ReleaseStatus.APPROVED)
        await emit_release(session, "release.approved", release, app)
        if rt.settings.enable_automatic_releases and not release.needs_admin:
            await _execute_automatically(session, rt, release, app)
    # One row for the decision; `status` says whether it approved the release, or also executed it.
    audit.record(session, principal, "release.approved", "release", release.id, {
        "app_id": app.id, "note": body.note, "approvals": count, "required_approvals": release.required_approvals,
        "status": release.status, "amount": release.amount, "currency": release.currency,
    })
    return release


async def _execute_automatically(session: AsyncSession, rt: Runtime, release: ReleaseRequest, app: App) -> None:
    """The approval stands even when the money cannot move now (frozen by a dispute, refunded
    meanwhile, the milestone already released for a deposit): the release stays `approved` and an
    admin sees to it."""
    try:
        async with session.begin_nested():
            await execute_release(session, rt, release, app)
    except (FundsFrozen, InsufficientFunds, InvalidState) as refusal:
        await session.refresh(release)  # the rolled-back savepoint expired it
        log.info("release %s approved but not executed automatically: %s", release.id, refusal.message)


async def execute_release(session: AsyncSession, rt: Runtime, release: ReleaseRequest, app: App) -> None:
    """Move the money in the caller's transaction. Any refusal raises, and the caller's transaction
    leaves the release approved."""
    await apply_one(session, rt, await release_money(session, release, app))
    await mark_released(session, release)


async def release_money(session: AsyncSession, release: ReleaseRequest, app: App) -> ReleaseMoney:
    items = (await session.scalars(select(ReleaseItem).where(ReleaseItem.release_id == release.id))).all()
    return ReleaseMoney(app=app, currency=release.currency, items=[(item.deposit_id, item.amount) for item in items],
                        source_id=release.id, milestone_id=release.milestone_id)


async def mark_released(session: AsyncSession, release: ReleaseRequest) -> None:
    milestone = await session.get(Milestone, release.milestone_id, with_for_update=True)
    assert milestone is not None
    advance(milestone, MilestoneStatus.RELEASED)
    advance(release, ReleaseStatus.RELEASED)
    release.executed_at = utcnow()
    app = await session.get(App, release.app_id)
    assert app is not None
    await emit_release(session, "release.executed", release, app)


async def pay_owner_from_deposits(
    session: AsyncSession,
    rt: Runtime,
    app: App,
    currency_code: str,
    items: list[tuple[str, int]],
    *,
    source_id: str,
    milestone_id: str | None,
    frozen_allowed: int = 0,
) -> None:
    """Release money in the caller's transaction: `escrow:app -> payable:user:{owner}`, one release
    row per deposit, and the owner's payout queued. `frozen_allowed` is for dispute resolution only."""
    await apply_one(session, rt, ReleaseMoney(app=app, currency=currency_code, items=items, source_id=source_id,
                                              milestone_id=milestone_id, frozen_allowed=frozen_allowed))


async def release_out(session: AsyncSession, release: ReleaseRequest) -> ReleaseOut:
    return (await releases_out(session, [release]))[0]


async def releases_out(session: AsyncSession, releases: Sequence[ReleaseRequest]) -> list[ReleaseOut]:
    """The releases as the API shows them, with their approvals and items: two queries for any number."""
    ids = [release.id for release in releases]
    approvals: dict[str, list[ReleaseApproval]] = defaultdict(list)
    for approval in await session.scalars(
        select(ReleaseApproval).where(ReleaseApproval.release_id.in_(ids)).order_by(ReleaseApproval.id)
    ):
        approvals[approval.release_id].append(approval)
    items: dict[str, list[ReleaseItem]] = defaultdict(list)
    for item in await session.scalars(
        select(ReleaseItem).where(ReleaseItem.release_id.in_(ids)).order_by(ReleaseItem.id)
    ):
        items[item.release_id].append(item)
    return [
        ReleaseOut(
            id=release.id, app_id=release.app_id, milestone_id=release.milestone_id,
            transaction_id=release.transaction_id, status=release.status,
            amount=to_major(release.amount, release.currency), currency=release.currency,
            release_percentage=format_percentage(release.release_percentage),
            required_approvals=release.required_approvals, needs_admin_approval=release.needs_admin,
            approvals=[ApprovalOut(approver_id=a.approver_id, decision=a.decision, is_admin=a.is_admin,
                                   note=a.note, created_at=a.created_at) for a in approvals[release.id]],
            items=[ReleaseItemOut(transaction_id=i.deposit_id, amount=to_major(i.amount, release.currency))
                   for i in items[release.id]],
            requested_by=release.requested_by, executed_at=release.executed_at, created_at=release.created_at,
        )
        for release in releases
    ]
