"""HTTP routes of payout accounts and payouts, with an admin's retry of a failed payout and the finalize (or
OTP resend) of a payout whose transfer waits for its OTP."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unauthorized
from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import AdminUser, CurrentUser, Principal
from app.payouts import flows, otp, service
from app.payouts.schemas import (
    BankList,
    BankOut,
    FinalizeIn,
    PayoutAccountIn,
    PayoutAccountList,
    PayoutAccountOut,
    PayoutOut,
)
from app.web.deps import RuntimeDep, SessionDep

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1", tags=["payouts"], dependencies=[RATE_LIMITED])
PayoutStatus = Literal["pending", "awaiting_payout_account", "awaiting_funds", "processing", "awaiting_otp", "paid",
                       "failed", "reversed"]
AccountId = Annotated[str, Path(min_length=1, max_length=40)]


@router.get("/banks", response_model=BankList)
async def banks(
    principal: CurrentUser,
    rt: RuntimeDep,
    currency: Annotated[str, Query(min_length=3, max_length=3)],
    type: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
    refresh: bool = False,
) -> BankList:
    listed = await flows.bank_list(rt, currency, type, refresh=refresh)
    return BankList(items=[BankOut(code=b.code, name=b.name, type=b.type, currency=b.currency) for b in listed])


@router.post("/payout-accounts", response_model=PayoutAccountOut, status_code=201)
async def add_payout_account(
    body: PayoutAccountIn, principal: CurrentUser, rt: RuntimeDep, response: Response
) -> PayoutAccountOut:
    account, created = await flows.register_payout_account(rt, principal, body, as_default=False)
    if not created:
        response.status_code = 200  # the same account again
    return PayoutAccountOut.model_validate(account)


@router.put("/payout-accounts/me", response_model=PayoutAccountOut)
async def register_payout_account(body: PayoutAccountIn, principal: CurrentUser, rt: RuntimeDep) -> PayoutAccountOut:
    account, _ = await flows.register_payout_account(rt, principal, body, as_default=True)
    return PayoutAccountOut.model_validate(account)


@router.get("/payout-accounts/me", response_model=PayoutAccountList)
async def my_payout_accounts(principal: CurrentUser, session: SessionDep) -> PayoutAccountList:
    rows = await service.list_payout_accounts(session, principal)
    return PayoutAccountList(items=[PayoutAccountOut.model_validate(a) for a in rows])


@router.post("/payout-accounts/{account_id}/default", response_model=PayoutAccountOut)
async def make_default_payout_account(
    account_id: AccountId, principal: CurrentUser, rt: RuntimeDep
) -> PayoutAccountOut:
    return PayoutAccountOut.model_validate(await flows.set_default_account(rt, principal, account_id))


@router.delete("/payout-accounts/{account_id}", status_code=204)
async def delete_payout_account(account_id: AccountId, principal: CurrentUser, session: SessionDep) -> Response:
    await service.delete_payout_account(session, principal, account_id)
    return Response(status_code=204)


@router.get("/payouts/me", response_model=Page[PayoutOut])
async def my_payouts(
    principal: CurrentUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
    status: PayoutStatus | None = None,
) -> Page[PayoutOut]:
    rows, cursor = await service.list_payouts(session, page, user_id=principal.user_id, status=status)
    return Page[PayoutOut](items=[PayoutOut.model_validate(p) for p in rows], next_cursor=cursor)


@router.get("/payouts", response_model=Page[PayoutOut])
async def all_payouts(
    _: AdminUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
    status: PayoutStatus | None = None, user_id: str | None = None,
) -> Page[PayoutOut]:
    rows, cursor = await service.list_payouts(session, page, user_id=user_id, status=status)
    return Page[PayoutOut](items=[PayoutOut.model_validate(p) for p in rows], next_cursor=cursor)


@router.post("/payouts/{payout_id}/retry", response_model=PayoutOut)
async def retry_payout(payout_id: str, principal: CurrentUser, session: SessionDep, rt: RuntimeDep) -> PayoutOut:
    if not principal.is_admin:
        await service.require_own_payout(session, principal, payout_id)  # someone else's: 404
        raise Unauthorized("Only an admin retries payouts")
    payout = await service.retry_payout(session, principal, payout_id)
    rt.notify_worker()
    return PayoutOut.model_validate(payout)


@router.post("/payouts/{payout_id}/finalize", response_model=PayoutOut)
async def finalize_payout(
    payout_id: str, body: FinalizeIn, principal: CurrentUser, session: SessionDep, rt: RuntimeDep
) -> PayoutOut:
    await _admin_only(session, principal, payout_id, "Only an admin finalizes payouts")
    return PayoutOut.model_validate(await otp.finalize_payout(rt, principal, payout_id, body.otp))


@router.post("/payouts/{payout_id}/resend-otp", response_model=PayoutOut)
async def resend_payout_otp(payout_id: str, principal: CurrentUser, session: SessionDep, rt: RuntimeDep) -> PayoutOut:
    await _admin_only(session, principal, payout_id, "Only an admin has OTPs sent again")
    return PayoutOut.model_validate(await otp.resend_payout_otp(rt, payout_id))


async def _admin_only(session: AsyncSession, principal: Principal, payout_id: str, refusal: str) -> None:
    """The payee sees their payout but may not act on it (403); anyone else's is not found (404)."""
    if not principal.is_admin:
        await service.require_own_payout(session, principal, payout_id)
        raise Unauthorized(refusal)
