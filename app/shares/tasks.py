"""The worker's share jobs: share transfers not paid before they expire give their reserved shares back."""

from __future__ import annotations

from sqlalchemy import select

from app.models import ShareTransfer
from app.models.base import utcnow
from app.runtime import Runtime
from app.shares.transfers import (
    _end,
)


async def expire_transfers(rt: Runtime) -> int:
    """Pending offers past their time give their shares back to the seller."""
    async with rt.db.unit_of_work() as session:
        due = (await session.scalars(
            select(ShareTransfer).where(ShareTransfer.status == "pending", ShareTransfer.expires_at <= utcnow())
            .order_by(ShareTransfer.id).limit(200).with_for_update(skip_locked=True)
        )).all()
        for transfer in due:
            await _end(session, transfer, "expired")
        return len(due)
