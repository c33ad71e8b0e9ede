"""HTTP routes of outbound events: the admin's webhook endpoints and their deliveries, and the event lists
(`GET /v1/events` for admins, `GET /v1/events/me` for anyone signed in)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import AdminUser, CurrentUser
from app.events import service
from app.events.schemas import DeliveryOut, EventOut, WebhookEndpointIn, WebhookEndpointOut, WebhookEndpointPatch
from app.models.events import EVENT_TYPE_LENGTH
from app.web.deps import RuntimeDep, SessionDep

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1", tags=["events"], dependencies=[RATE_LIMITED])

After = Annotated[str | None, Query(max_length=40, description="An event id: the events after it, oldest first")]
EventType = Annotated[str | None, Query(alias="type", max_length=EVENT_TYPE_LENGTH)]


@router.post("/admin/webhook-endpoints", status_code=201, response_model=WebhookEndpointOut)
async def create_endpoint(body: WebhookEndpointIn, principal: AdminUser, rt: RuntimeDep, session: SessionDep
                          ) -> WebhookEndpointOut:
    return await service.create_endpoint(session, rt.settings, rt.cipher, principal, body)


@router.get("/admin/webhook-endpoints", response_model=Page[WebhookEndpointOut])
async def list_endpoints(
    _: AdminUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[WebhookEndpointOut]:
    rows, cursor = await service.list_endpoints(session, page)
    return Page[WebhookEndpointOut](items=[WebhookEndpointOut.model_validate(e) for e in rows], next_cursor=cursor)


@router.get("/admin/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointOut)
async def get_endpoint(endpoint_id: str, _: AdminUser, session: SessionDep) -> WebhookEndpointOut:
    return WebhookEndpointOut.model_validate(await service.get_endpoint(session, endpoint_id))


@router.patch("/admin/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointOut)
async def update_endpoint(endpoint_id: str, body: WebhookEndpointPatch, principal: AdminUser, rt: RuntimeDep,
                          session: SessionDep) -> WebhookEndpointOut:
    return await service.update_endpoint(session, rt.settings, rt.cipher, principal, endpoint_id, body)


@router.delete("/admin/webhook-endpoints/{endpoint_id}", status_code=204, response_class=Response)
async def delete_endpoint(endpoint_id: str, principal: AdminUser, session: SessionDep) -> Response:
    await service.delete_endpoint(session, principal, endpoint_id)
    return Response(status_code=204)


@router.get("/admin/webhook-endpoints/{endpoint_id}/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    endpoint_id: str, _: AdminUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
    status: Literal["pending", "delivered", "failed"] | None = None,
) -> Page[DeliveryOut]:
    items, cursor = await service.list_deliveries(session, endpoint_id, page, status=status)
    return Page[DeliveryOut](items=items, next_cursor=cursor)


@router.post("/admin/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
async def retry_delivery(endpoint_id: str, delivery_id: str, principal: AdminUser, rt: RuntimeDep,
                         session: SessionDep) -> DeliveryOut:
    delivery = await service.retry_delivery(session, rt.settings, principal, endpoint_id, delivery_id)
    rt.notify_worker()
    return delivery


@router.get("/events", response_model=Page[EventOut])
async def list_events(
    _: AdminUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
    after: After = None, event_type: EventType = None,
) -> Page[EventOut]:
    rows, cursor = await service.list_events(session, page, after=after, type=event_type)
    return Page[EventOut](items=[EventOut.of(e) for e in rows], next_cursor=cursor)


@router.get("/events/me", response_model=Page[EventOut])
async def my_events(
    principal: CurrentUser, session: SessionDep, page: Annotated[PageParams, Depends(page_params)],
    after: After = None, event_type: EventType = None,
) -> Page[EventOut]:
    rows, cursor = await service.list_events(session, page, after=after, type=event_type, user_id=principal.user_id)
    return Page[EventOut](items=[EventOut.of(e) for e in rows], next_cursor=cursor)
