"""HTTP route of the audit trail: `GET /v1/admin/audit-log` (admins only). The trail has no write route."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.audit import service
from app.audit.schemas import AuditEntryOut, AuditPage
from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.core.schemas import PageParams, page_params
from app.core.security import AdminUser
from app.web.deps import SessionDep

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1/admin", tags=["operations"], dependencies=[RATE_LIMITED])


@router.get("/audit-log", response_model=AuditPage)
async def audit_log(
    _: AdminUser,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
    actor: Annotated[str | None, Query(max_length=128, description="The actor's user id")] = None,
    resource: Annotated[str | None, Query(
        max_length=170, pattern=r"^[a-z_]{1,40}(:[^:]{1,128})?$",
        description="A resource type (`release`), or a type and an id (`release:rel_...`)",
    )] = None,
    action: Annotated[str | None, Query(max_length=64, description="An action (`release.approved`)")] = None,
    since: Annotated[datetime | None, Query(alias="from", description="From this time (inclusive; UTC if no offset)")]
    = None,
    until: Annotated[datetime | None, Query(alias="to", description="Up to this time (exclusive; UTC if no offset)")]
    = None,
) -> AuditPage:
    rows, cursor = await service.list_entries(
        session, page, actor=actor, resource=resource, action=action, since=since, until=until
    )
    return AuditPage(items=[AuditEntryOut.model_validate(row) for row in rows], next_cursor=cursor)
