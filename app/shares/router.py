"""HTTP routes of holdings, the cap table and share transfers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ratelimit import RATE_LIMITED, limiter, payments_limit
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import CurrentUser
from app.shares import service, transfers
from app.shares.schemas import CapTableOut, HoldingOut, HoldingsOut, ShareTransferIn, ShareTransferOut
from app.web.deps import RuntimeDep, SessionDep
from app.web.idempotency import IdempotencyKey, idempotent_in

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1", tags=["shares"], dependencies=[RATE_LIMITED])


@router.get("/holdings/me", response_model=HoldingsOut)
async def my_holdings(principal: CurrentUser, session: SessionDep) -> HoldingsOut:
    holdings = await service.holdings_of(session, principal.user_id)
    return HoldingsOut(items=[
        HoldingOut(app_id=h.app_id, shares=h.shares, reserved_shares=h.reserved_shares, acquired_at=h.acquired_at)
        for h in holdings
    ])


@router.get("/apps/{app_id}/cap-table", response_model=CapTableOut)
async def cap_table(
    app_id: str, principal: CurrentUser, session: SessionDep, as_of: datetime | None = None
) -> CapTableOut:
    return await service.cap_table_of(session, principal, app_id, as_of)


@router.post("/share-transfers", status_code=201, response_model=ShareTransferOut)
@limiter.limit(payments_limit)
async def offer_shares(
    request: Request, body: ShareTransferIn, principal: CurrentUser, rt: RuntimeDep, session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create(session: AsyncSession) -> ShareTransferOut:
        return ShareTransferOut.model_validate(await transfers.offer(session, rt, principal, body))

    scope = "POST /v1/share-transfers"
    return await idempotent_in(session, rt.db, principal, idempotency_key, scope, body, create)


@router.get("/share-transfers", response_model=Page[ShareTransferOut])
async def list_share_transfers(
    principal: CurrentUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
    status: Literal["pending", "completed", "cancelled", "expired"] | None = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[ShareTransferOut]:
    rows, cursor = await transfers.list_transfers(session, principal, page, status=status, app_id=app_id)
    return Page[ShareTransferOut](items=[ShareTransferOut.model_validate(t) for t in rows], next_cursor=cursor)


@router.get("/share-transfers/{transfer_id}", response_model=ShareTransferOut)
async def get_share_transfer(transfer_id: str, principal: CurrentUser, session: SessionDep) -> ShareTransferOut:
    return ShareTransferOut.model_validate(await transfers.get_transfer(session, principal, transfer_id))


@router.post("/share-transfers/{transfer_id}/cancel", response_model=ShareTransferOut)
async def cancel_share_transfer(transfer_id: str, principal: CurrentUser, session: SessionDep) -> ShareTransferOut:
    return ShareTransferOut.model_validate(await transfers.cancel(session, principal, transfer_id))
