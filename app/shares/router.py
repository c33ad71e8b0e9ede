from __future__ import annotations

from fastapi import APIRouter

from app.core.ratelimit import RATE_LIMITED
from app.core.security import CurrentUser
from app.deps import SessionDep
from app.shares import service
from app.shares.schemas import HoldingOut, HoldingsOut

router = APIRouter(prefix="/v1", tags=["shares"], dependencies=[RATE_LIMITED])


@router.get("/holdings/me", response_model=HoldingsOut)
async def my_holdings(principal: CurrentUser, session: SessionDep) -> HoldingsOut:
    holdings = await service.holdings_of(session, principal.user_id)
    return HoldingsOut(items=[
        HoldingOut(app_id=h.app_id, shares=h.shares, reserved_shares=h.reserved_shares, acquired_at=h.acquired_at)
        for h in holdings
    ])
