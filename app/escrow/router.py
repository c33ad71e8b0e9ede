"""HTTP routes of escrow: transactions and their refunds, an app's escrow summary and statement, milestones,
releases and their approval and execution."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unauthorized
from app.core.ratelimit import RATE_LIMITED, limiter, payments_limit
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import CurrentUser
from app.escrow import flows, milestones, releases, reports, service
from app.escrow.schemas import (
    ApprovalIn,
    EscrowSummary,
    EscrowTransactionOut,
    EscrowTransactionPage,
    EscrowType,
    MilestoneComplete,
    MilestoneIn,
    MilestoneOut,
    RefundIn,
    RefundOut,
    ReleaseIn,
    ReleaseOut,
    Statement,
)
from app.web.deps import RuntimeDep, SessionDep
from app.web.idempotency import Answer, IdempotencyKey, idempotent, idempotent_in

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1", tags=["escrow"], dependencies=[RATE_LIMITED])
ReleaseStatus = Literal["pending_approval", "approved", "rejected", "released"]


@router.get("/escrow/transactions", response_model=EscrowTransactionPage)
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
    return EscrowTransactionPage(items=[EscrowTransactionOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/escrow/transactions/{transaction_id}", response_model=EscrowTransactionOut)
async def get_transaction(transaction_id: str, principal: CurrentUser, session: SessionDep) -> EscrowTransactionOut:
    return EscrowTransactionOut.model_validate(await service.get_transaction(session, principal, transaction_id))


@router.post("/escrow/transactions/{transaction_id}/refunds", status_code=201, response_model=RefundOut)
@limiter.limit(payments_limit)
async def refund_transaction(
    request: Request, transaction_id: str, body: RefundIn, principal: CurrentUser, rt: RuntimeDep,
    session: SessionDep, idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    if not principal.is_admin:
        # someone else's deposit is 404; one the caller can see (its own, its app's) is 403
        await service.get_transaction(session, principal, transaction_id)
        raise Unauthorized("Only an admin refunds escrow")

    async def refund(_: Answer) -> RefundOut:  # recorded after the escrow group commit's batch commits
        return await flows.request_refund(rt, principal, transaction_id, amount=body.amount, reason=body.reason)

    scope = f"POST /v1/escrow/transactions/{transaction_id}/refunds"
    return await idempotent(rt.db, principal, idempotency_key, scope, body, refund)


@router.get("/apps/{app_id}/escrow", response_model=EscrowSummary)
async def app_escrow(app_id: str, principal: CurrentUser, session: SessionDep) -> EscrowSummary:
    return await reports.summary(session, principal, app_id)


@router.get("/apps/{app_id}/escrow/statement", response_model=Statement)
async def app_statement(
    app_id: str,
    principal: CurrentUser,
    session: SessionDep,
    from_date: Annotated[date | None, Query(alias="from")] = None,
    to_date: Annotated[date | None, Query(alias="to")] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    report = await reports.statement(session, principal, app_id, from_date, to_date)
    if format == "csv":
        return Response(reports.statement_csv(report), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="escrow-{app_id}.csv"'})
    return JSONResponse(report.model_dump(mode="json"))


@router.post("/apps/{app_id}/milestones", status_code=201, response_model=MilestoneOut)
async def create_milestone(app_id: str, body: MilestoneIn, principal: CurrentUser, session: SessionDep) -> MilestoneOut:
    return MilestoneOut.model_validate(await milestones.create_milestone(session, principal, app_id, body))


@router.get("/apps/{app_id}/milestones", response_model=Page[MilestoneOut])
async def list_milestones(app_id: str, _: CurrentUser, session: SessionDep) -> Page[MilestoneOut]:
    rows = await milestones.list_milestones(session, app_id)
    return Page[MilestoneOut](items=[MilestoneOut.model_validate(m) for m in rows])


@router.post("/milestones/{milestone_id}/complete", response_model=MilestoneOut)
async def complete_milestone(
    milestone_id: str, body: MilestoneComplete, principal: CurrentUser, session: SessionDep
) -> MilestoneOut:
    return MilestoneOut.model_validate(
        await milestones.complete_milestone(session, principal, milestone_id, body.evidence)
    )


@router.post("/escrow/releases", status_code=201, response_model=ReleaseOut)
@limiter.limit(payments_limit)
async def create_release(
    request: Request, body: ReleaseIn, principal: CurrentUser, rt: RuntimeDep, session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create(session: AsyncSession) -> ReleaseOut:
        release = await releases.create_release(session, rt, principal, body)
        return await releases.release_out(session, release)

    scope = "POST /v1/escrow/releases"
    return await idempotent_in(session, rt.db, principal, idempotency_key, scope, body, create)


@router.get("/escrow/releases", response_model=Page[ReleaseOut])
async def list_releases(
    principal: CurrentUser,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    status: ReleaseStatus | None = None,
) -> Page[ReleaseOut]:
    rows, cursor = await releases.list_releases(session, principal, page, app_id=app_id, status=status)
    return Page[ReleaseOut](items=await releases.releases_out(session, rows), next_cursor=cursor)


@router.get("/escrow/releases/{release_id}", response_model=ReleaseOut)
async def get_release(release_id: str, principal: CurrentUser, session: SessionDep) -> ReleaseOut:
    release, _ = await releases.get_release(session, principal, release_id)
    return await releases.release_out(session, release)


@router.post("/escrow/releases/{release_id}/approvals", response_model=ReleaseOut)
async def decide_release(
    release_id: str, body: ApprovalIn, principal: CurrentUser, session: SessionDep, rt: RuntimeDep
) -> ReleaseOut:
    release = await releases.decide(session, rt, principal, release_id, body)
    return await releases.release_out(session, release)


@router.post("/escrow/releases/{release_id}/execute", response_model=ReleaseOut)
@limiter.limit(payments_limit)
async def execute_release(request: Request, release_id: str, principal: CurrentUser, rt: RuntimeDep) -> ReleaseOut:
    return await flows.execute(rt, principal, release_id)
