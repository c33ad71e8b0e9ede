"""HTTP routes of holdings, the cap table and share transfers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from app.apps.access import manages, require
from app.apps.service import get_app
from app.core.money import FULL_PERCENT, allocate, format_percentage
from app.core.ratelimit import RATE_LIMITED, limiter, payments_limit
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import CurrentUser
from app.shares import service, transfers
from app.shares.schemas import CapTableItem, CapTableOut, HoldingOut, HoldingsOut, ShareTransferIn, ShareTransferOut
from app.web.deps import RuntimeDep, SessionDep
from app.web.idempotency import IdempotencyKey, idempotent

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1", tags=["shares"], dependencies=[RATE_LIMITED])
ROUNDING = "largest remainder over hundredths of a percent, so the percentages add up to exactly 100.00"


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
    app = await get_app(session, app_id)
    require(manages(app, principal), "Only the app's owner or an admin sees its cap table")
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)  # a time without an offset is UTC, as everywhere in the service
    holders = await service.cap_table(session, app_id, as_of)
    issued = sum(shares for _, shares in holders)
    hundredths = allocate(FULL_PERCENT, [shares for _, shares in holders]) if issued else []
    return CapTableOut(
        app_id=app_id, total_shares=app.total_shares, shares_issued=issued if as_of else app.shares_issued,
        as_of=as_of, percentage_rounding=ROUNDING,
        items=[CapTableItem(user_id=user_id, shares=shares, percentage=format_percentage(pct))
               for (user_id, shares), pct in zip(holders, hundredths, strict=True)],
    )


@router.post("/share-transfers", status_code=201, response_model=ShareTransferOut)
@limiter.limit(payments_limit)
async def offer_shares(
    request: Request, body: ShareTransferIn, principal: CurrentUser, rt: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> ShareTransferOut:
        async with rt.db.unit_of_work() as session:
            return transfers.transfer_out(await transfers.offer(session, rt, principal, body))

    return await idempotent(rt.db, principal, idempotency_key, "POST /v1/share-transfers", body, create)


@router.get("/share-transfers", response_model=Page[ShareTransferOut])
async def list_share_transfers(
    principal: CurrentUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
    status: Literal["pending", "completed", "cancelled", "expired"] | None = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[ShareTransferOut]:
    rows, cursor = await transfers.list_transfers(session, principal, page, status=status, app_id=app_id)
    return Page[ShareTransferOut](items=[transfers.transfer_out(t) for t in rows], next_cursor=cursor)


@router.get("/share-transfers/{transfer_id}", response_model=ShareTransferOut)
async def get_share_transfer(transfer_id: str, principal: CurrentUser, session: SessionDep) -> ShareTransferOut:
    return transfers.transfer_out(await transfers.get_transfer(session, principal, transfer_id))


@router.post("/share-transfers/{transfer_id}/cancel", response_model=ShareTransferOut)
async def cancel_share_transfer(transfer_id: str, principal: CurrentUser, session: SessionDep) -> ShareTransferOut:
    return transfers.transfer_out(await transfers.cancel(session, principal, transfer_id))
