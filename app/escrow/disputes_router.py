"""HTTP routes of disputes: open, list, read and resolve (403 FEATURE_DISABLED when dispute resolution is off)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import CurrentUser
from app.escrow import disputes
from app.escrow.schemas import DisputeIn, DisputeOut, DisputeResolve
from app.web.deps import RuntimeDep, SessionDep

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1/disputes", tags=["disputes"], dependencies=[RATE_LIMITED])


@router.post("", status_code=201, response_model=DisputeOut)
async def open_dispute(body: DisputeIn, principal: CurrentUser, session: SessionDep, rt: RuntimeDep) -> DisputeOut:
    return DisputeOut.model_validate(await disputes.open_dispute(session, rt, principal, body))


@router.get("", response_model=Page[DisputeOut])
async def list_disputes(
    principal: CurrentUser,
    session: SessionDep,
    rt: RuntimeDep,
    page: Annotated[PageParams, Depends(page_params)],
    status: Literal["open", "resolved"] | None = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[DisputeOut]:
    disputes.require_enabled(rt.settings)
    rows, cursor = await disputes.list_disputes(session, principal, page, status=status, app_id=app_id)
    return Page[DisputeOut](items=[DisputeOut.model_validate(d) for d in rows], next_cursor=cursor)


@router.get("/{dispute_id}", response_model=DisputeOut)
async def get_dispute(dispute_id: str, principal: CurrentUser, session: SessionDep, rt: RuntimeDep) -> DisputeOut:
    disputes.require_enabled(rt.settings)
    return DisputeOut.model_validate(await disputes.get_dispute(session, principal, dispute_id))


@router.post("/{dispute_id}/resolve", response_model=DisputeOut)
async def resolve_dispute(
    dispute_id: str, body: DisputeResolve, principal: CurrentUser, session: SessionDep, rt: RuntimeDep
) -> DisputeOut:
    return DisputeOut.model_validate(await disputes.resolve_dispute(session, rt, principal, dispute_id, body))
