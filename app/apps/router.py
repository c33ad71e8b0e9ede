"""HTTP routes of the app registry: `PUT /v1/apps/{app_id}` (admin or service), `GET /v1/apps` (an admin: every
app; anyone else: the apps they own or approve) and `GET /v1/apps/{app_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from app.apps import service
from app.apps.schemas import AppOut, AppUpsert
from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import AdminOrService, CurrentUser
from app.web.deps import SessionDep, SettingsDep

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1/apps", tags=["apps"], dependencies=[RATE_LIMITED])
AppId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


@router.get("", response_model=Page[AppOut])
async def list_apps(
    principal: CurrentUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[AppOut]:
    rows, cursor = await service.list_apps(session, principal, page)
    return Page[AppOut](items=[AppOut.model_validate(app) for app in rows], next_cursor=cursor)


@router.put("/{app_id}", response_model=AppOut)
async def upsert_app(
    app_id: AppId, body: AppUpsert, principal: AdminOrService, session: SessionDep, settings: SettingsDep
) -> AppOut:
    return AppOut.model_validate(await service.upsert_app(session, settings, principal, app_id, body))


@router.get("/{app_id}", response_model=AppOut)
async def get_app(app_id: AppId, _: CurrentUser, session: SessionDep) -> AppOut:
    return AppOut.model_validate(await service.get_app(session, app_id))
