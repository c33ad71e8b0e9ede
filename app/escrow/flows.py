"""Escrow flows that own their transactions: executing an approved release and refunding a deposit both
run in the escrow group commit (`group_commit.run`), which shares one transaction among the movements
asked for at the same time."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.access import require
from app.core.errors import InvalidState
from app.core.security import Principal
from app.escrow import group_commit
from app.escrow.group_commit import Finish
from app.escrow.movements import RefundMade, RefundMoney, ReleaseMoney
from app.escrow.refunds import refund_out
from app.escrow.releases import get_release, mark_released, release_money, release_out
from app.escrow.schemas import RefundOut, ReleaseOut
from app.models import audit
from app.runtime import Runtime


async def execute(rt: Runtime, principal: Principal, release_id: str) -> ReleaseOut:
    """An admin executes an approved release, in the next batch of the escrow group commit."""
    request = audit.actor_request_id()  # the batch may run in another request's task

    async def prepare(session: AsyncSession) -> tuple[ReleaseMoney, Finish]:
        release, app = await get_release(session, principal, release_id, for_update=True)
        require(principal.is_admin, "Only an admin executes releases")
        if release.status != "approved":
            raise InvalidState("Only an approved release can be executed", status=release.status)

        async def finish(_: object) -> ReleaseOut:
            await mark_released(session, release)
            audit.record(session, principal, "release.executed", "release", release.id,
                         {"app_id": app.id, "amount": release.amount, "currency": release.currency,
                          "status": release.status}, request=request)
            return await release_out(session, release)

        return await release_money(session, release, app), finish

    return await group_commit.run(rt, prepare, key=release_id)


async def request_refund(
    rt: Runtime, principal: Principal, deposit_id: str, *, amount: Decimal | None, reason: str
) -> RefundOut:
    """An admin refunds `amount` (major units; default all that remains) of a deposit, in the next
    batch of the escrow group commit."""
    request = audit.actor_request_id()

    async def prepare(session: AsyncSession) -> tuple[RefundMoney, Finish]:
        async def finish(made: object) -> RefundOut:
            assert isinstance(made, RefundMade)
            audit.record(session, principal, "escrow.refunded", "escrow_transaction", deposit_id, {
                "refund_id": made.refund_id, "amount": made.amount, "currency": made.currency,
                "reason": reason,
            }, request=request)
            return refund_out(made)

        return RefundMoney(deposit_id=deposit_id, amount=None, amount_major=amount, reason=reason), finish

    return await group_commit.run(rt, prepare)
