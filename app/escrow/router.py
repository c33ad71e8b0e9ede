from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.core.ratelimit import RATE_LIMITED
from app.core.schemas import PageParams, page_params
from app.core.security import CurrentUser
from app.deps import SessionDep
from app.escrow import service
from app.escrow.schemas import EscrowTransactionOut, EscrowTransactionPage, EscrowType

router = APIRouter(prefix="/v1/escrow", tags=["escrow"], dependencies=[RATE_LIMITED])


@router.get("/transactions", response_model=EscrowTransactionPage)
async def list_transactions(
    principal: CurrentUser,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    investor_id: Annotated[str | None, Query(max_length=128)] = None,
    type: EscrowType | None = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> EscrowTransactionPage:
    rows, cursor = await service.list_transactions(
        session, principal, page, app_id=app_id, investor_id=investor_id, type=type, status=status
    )
    return EscrowTransactionPage(items=[service.transaction_out(r) for r in rows], next_cursor=cursor)


@router.get("/transactions/{transaction_id}", response_model=EscrowTransactionOut)
async def get_transaction(transaction_id: str, principal: CurrentUser, session: SessionDep) -> EscrowTransactionOut:
    return service.transaction_out(await service.get_transaction(session, principal, transaction_id))
