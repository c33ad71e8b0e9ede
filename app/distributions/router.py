"""HTTP routes of revenue declarations, distributions (create, dry run, list, allocations) and the monthly
revenue report."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ratelimit import RATE_LIMITED, limiter, payments_limit
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import CurrentUser
from app.distributions import declarations, flows, reports, service
from app.distributions.schemas import (
    AllocationPage,
    DistributionIn,
    DistributionList,
    DistributionOut,
    MonthlyRevenueReport,
    MyAllocationPage,
    RevenueDeclarationIn,
    RevenueDeclarationOut,
)
from app.web.deps import RuntimeDep, SessionDep, SettingsDep
from app.web.idempotency import Answer, IdempotencyKey, idempotent, idempotent_in

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1", tags=["distributions"], dependencies=[RATE_LIMITED])
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9_.-]")


def report_filename(year: int, app_id: str | None) -> str:
    """The CSV's file name: the app's id kept to characters that need no quoting in a header."""
    return f"revenue-{_UNSAFE_IN_FILENAME.sub('_', app_id)}-{year}.csv" if app_id else f"revenue-{year}.csv"


@router.post("/apps/{app_id}/revenue-declarations", status_code=201, response_model=RevenueDeclarationOut)
@limiter.limit(payments_limit)
async def declare_revenue(
    request: Request, app_id: str, body: RevenueDeclarationIn, principal: CurrentUser, rt: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The investors' pool is computed by the server; the owner pays exactly that at `payment_url`, and its
    success distributes the pool. A new declaration of the same period replaces an unpaid one."""
    async def create(answer: Answer) -> RevenueDeclarationOut:
        return await flows.declare_revenue(rt, principal, app_id, body, answer)

    scope = f"POST /v1/apps/{app_id}/revenue-declarations"
    return await idempotent(rt.db, principal, idempotency_key, scope, body, create)


@router.get("/apps/{app_id}/revenue-declarations", response_model=Page[RevenueDeclarationOut])
async def list_revenue_declarations(
    app_id: str, principal: CurrentUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
) -> Page[RevenueDeclarationOut]:
    """Newest first, replaced ones included."""
    rows, cursor = await declarations.list_declarations(session, principal, app_id, page)
    return Page[RevenueDeclarationOut](items=[RevenueDeclarationOut.model_validate(d) for d in rows],
                                       next_cursor=cursor)


@router.post("/apps/{app_id}/distributions", status_code=201, response_model=DistributionOut)
@limiter.limit(payments_limit)
async def create_distribution(
    request: Request, app_id: str, body: DistributionIn, principal: CurrentUser, rt: RuntimeDep,
    session: SessionDep, idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """`dry_run` answers 200 with the same figures and writes nothing."""
    if body.dry_run:
        plan = await service.plan_distribution(session, rt, principal, app_id, body)
        return JSONResponse(service.plan_out(plan, body.period).model_dump(mode="json"), status_code=200)

    async def create(session: AsyncSession) -> DistributionOut:
        plan = await service.plan_distribution(session, rt, principal, app_id, body)
        distribution = await service.write_distribution(session, rt, principal, plan, body.period)
        return DistributionOut.model_validate(distribution)

    scope = f"POST /v1/apps/{app_id}/distributions"
    return await idempotent_in(session, rt.db, principal, idempotency_key, scope, body, create)


@router.get("/apps/{app_id}/distributions", response_model=DistributionList)
async def app_distributions(app_id: str, principal: CurrentUser, session: SessionDep) -> DistributionList:
    rows = await service.list_app_distributions(session, principal, app_id)
    return DistributionList(items=[DistributionOut.model_validate(d) for d in rows])


@router.get("/distributions/me", response_model=MyAllocationPage)
async def my_distributions(
    principal: CurrentUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> MyAllocationPage:
    items, cursor = await service.my_allocations(session, principal, page)
    return MyAllocationPage(items=items, next_cursor=cursor)


@router.get("/distributions/{distribution_id}", response_model=DistributionOut)
async def get_distribution(distribution_id: str, principal: CurrentUser, session: SessionDep) -> DistributionOut:
    return DistributionOut.model_validate(await service.get_distribution(session, principal, distribution_id))


@router.get("/distributions/{distribution_id}/allocations", response_model=AllocationPage)
async def distribution_allocations(
    distribution_id: str, principal: CurrentUser, session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
) -> AllocationPage:
    distribution = await service.get_distribution(session, principal, distribution_id)
    items, cursor = await service.list_allocations(session, distribution, page)
    return AllocationPage(items=items, next_cursor=cursor)


@router.get("/reports/revenue/monthly", response_model=MonthlyRevenueReport)
async def monthly_revenue(
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    year: Annotated[int | None, Query(ge=2000, le=2200)] = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    currency: Annotated[str | None, Query(min_length=3, max_length=3)] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    year = year or datetime.now(UTC).year
    report = await reports.monthly_revenue(session, settings, principal, year, app_id, currency)
    if format == "csv":
        return Response(reports.report_csv(report), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{report_filename(year, app_id)}"'})
    return JSONResponse(report.model_dump(mode="json"))
