"""Reading the audit trail: filters by actor, resource and time, newest first, cursor pages. Nothing here
writes: `app.models.audit.record` is the trail's only writer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.core.schemas import PageParams, fetch_page, where_given
from app.models import AuditEntry


def _utc(moment: datetime | None, name: str) -> datetime | None:
    """In UTC; a time without an offset is read as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # an offset that takes year 1 or 9999 out of range
        raise ValidationFailed(f"{name} is out of range", field=name) from None


async def list_entries(
    session: AsyncSession,
    params: PageParams,
    *,
    actor: str | None,
    resource: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[Sequence[AuditEntry], str | None]:
    """`resource` is a type (`release`) or a type and an id (`release:rel_...`); `since` is inclusive,
    `until` exclusive."""
    resource_type, _, resource_id = (resource or "").partition(":")
    stmt = where_given(select(AuditEntry), {
        AuditEntry.actor_id: actor, AuditEntry.resource_type: resource_type, AuditEntry.resource_id: resource_id,
        AuditEntry.action: action,
    })
    if since := _utc(since, "from"):
        stmt = stmt.where(AuditEntry.at >= since)
    if until := _utc(until, "to"):
        stmt = stmt.where(AuditEntry.at < until)
    return await fetch_page(session, stmt, AuditEntry.id, params)
