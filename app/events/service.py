"""Webhook endpoints (registered, changed, removed), their deliveries and an admin's retry of one, and the
event lists for readers who poll; in the caller's session, never committing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.crypto import FieldCipher
from app.core.errors import NotFound, ValidationFailed
from app.core.repository import get_or_404
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.events import signing, urls
from app.events.schemas import AttemptOut, DeliveryOut, WebhookEndpointIn, WebhookEndpointOut, WebhookEndpointPatch
from app.models import audit
from app.models.base import new_id, utcnow
from app.models.events import EventSubject, OutboundEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint

ATTEMPTS_SHOWN = 50


def _audited(endpoint: WebhookEndpoint) -> dict[str, object]:
    """What the audit trail keeps of an endpoint: never its secret."""
    return {"url": endpoint.url, "events": list(endpoint.events), "description": endpoint.description,
            "disabled": endpoint.disabled}


async def checked_url(settings: Settings, url: str) -> str:
    try:
        await urls.check(url, settings)
    except urls.RefusedURL as refused:
        raise ValidationFailed(f"url refused: {refused}", field="url") from None
    return url


async def create_endpoint(
    session: AsyncSession, settings: Settings, cipher: FieldCipher, principal: Principal, body: WebhookEndpointIn
) -> WebhookEndpointOut:
    url = await checked_url(settings, body.url)  # before the transaction writes anything
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(id=new_id("we"), url=url, events=body.events, description=body.description,
                               secret_encrypted=cipher.encrypt(secret), disabled=False, lane_until=utcnow())
    session.add(endpoint)
    await session.flush()
    audit.record(session, principal, "webhook_endpoint.created", "webhook_endpoint", endpoint.id,
                 audit.diff({}, _audited(endpoint)))
    return WebhookEndpointOut.model_validate(endpoint).model_copy(update={"secret": secret})


async def list_endpoints(session: AsyncSession, params: PageParams) -> tuple[Sequence[WebhookEndpoint], str | None]:
    return await fetch_page(session, select(WebhookEndpoint), WebhookEndpoint.id, params)


async def get_endpoint(session: AsyncSession, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint:
    return await get_or_404(session, WebhookEndpoint, endpoint_id, for_update=for_update, what="webhook_endpoint")


async def update_endpoint(
    session: AsyncSession, settings: Settings, cipher: FieldCipher, principal: Principal, endpoint_id: str,
    body: WebhookEndpointPatch,
) -> WebhookEndpointOut:
    url = None if body.url is None else await checked_url(settings, body.url)
    endpoint = await get_endpoint(session, endpoint_id, for_update=True)
    before = _audited(endpoint)
    if url is not None:
        endpoint.url = url
    if body.events is not None:
        endpoint.events = body.events
    if body.description is not None:
        endpoint.description = body.description
    if body.disabled is not None:
        endpoint.disabled = body.disabled
    secret = None
    if body.rotate_secret:
        secret = signing.new_secret()
        endpoint.secret_encrypted = cipher.encrypt(secret)
    endpoint.updated_at = utcnow()
    await session.flush()
    changes: dict[str, object] = dict(audit.diff(before, _audited(endpoint)))
    if body.rotate_secret:
        changes["signing_key_rotated"] = True
    audit.record(session, principal, "webhook_endpoint.updated", "webhook_endpoint", endpoint.id, changes)
    return WebhookEndpointOut.model_validate(endpoint).model_copy(update={"secret": secret})


async def delete_endpoint(session: AsyncSession, principal: Principal, endpoint_id: str) -> None:
    """The endpoint and its delivery history go; the events stay (they are the service's record)."""
    endpoint = await get_endpoint(session, endpoint_id, for_update=True)
    audit.record(session, principal, "webhook_endpoint.deleted", "webhook_endpoint", endpoint.id,
                 audit.diff(_audited(endpoint), dict.fromkeys(_audited(endpoint))))
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id).scalar_subquery()
    await session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    await session.delete(endpoint)


async def list_deliveries(
    session: AsyncSession, endpoint_id: str, params: PageParams, *, status: str | None
) -> tuple[list[DeliveryOut], str | None]:
    await get_endpoint(session, endpoint_id)
    stmt = where_given(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id),
                       {WebhookDelivery.status: status})
    rows, cursor = await fetch_page(session, stmt, WebhookDelivery.id, params)
    return await deliveries_out(session, rows), cursor


async def deliveries_out(session: AsyncSession, deliveries: Sequence[WebhookDelivery]) -> list[DeliveryOut]:
    """The deliveries with their attempts: two queries for any number."""
    attempts: dict[str, list[WebhookAttempt]] = defaultdict(list)
    for attempt in await session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
        .order_by(WebhookAttempt.id)
    ):
        attempts[attempt.delivery_id].append(attempt)
    return [
        DeliveryOut(
            id=d.id, endpoint_id=d.endpoint_id, event_id=d.event_id, event_type=d.event_type, status=d.status,
            next_attempt_at=d.available_at if d.status == "pending" else None, give_up_at=d.give_up_at,
            created_at=d.created_at, delivered_at=d.delivered_at,
            attempts=[AttemptOut.model_validate(a) for a in attempts[d.id][-ATTEMPTS_SHOWN:]],
        )
        for d in deliveries
    ]


async def retry_delivery(
    session: AsyncSession, settings: Settings, principal: Principal, endpoint_id: str, delivery_id: str
) -> DeliveryOut:
    """Send the delivery again now, whatever it came to, with a fresh retry window."""
    await get_endpoint(session, endpoint_id)
    delivery = await get_or_404(session, WebhookDelivery, delivery_id, for_update=True, what="delivery")
    if delivery.endpoint_id != endpoint_id:
        raise NotFound("Delivery not found", delivery_id=delivery_id)
    audit.record(session, principal, "webhook_delivery.retried", "webhook_delivery", delivery.id,
                 {"endpoint_id": endpoint_id, "event_id": delivery.event_id,
                  "status": {"before": delivery.status, "after": "pending"}})
    now = utcnow()
    delivery.status, delivery.attempts, delivery.available_at = "pending", 0, now
    delivery.give_up_at = now + timedelta(seconds=settings.webhook_delivery_max_age_seconds)
    await session.flush()
    return (await deliveries_out(session, [delivery]))[0]


async def list_events(
    session: AsyncSession, params: PageParams, *, after: str | None, type: str | None, user_id: str | None = None
) -> tuple[Sequence[OutboundEvent], str | None]:
    """Oldest first from `after` (an event id); `user_id`: only the events about that user."""
    stmt = where_given(select(OutboundEvent), {OutboundEvent.type: type})
    if user_id is not None:
        stmt = stmt.join(EventSubject, EventSubject.event_id == OutboundEvent.id).where(EventSubject.user_id == user_id)
    if after:
        stmt = stmt.where(OutboundEvent.id > after)
    rows = (await session.scalars(stmt.order_by(OutboundEvent.id).limit(params.limit + 1))).all()
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        return rows, rows[-1].id
    return rows, None


async def delivery_backlog(session: AsyncSession) -> tuple[int, int]:
    """What waits to go out: events not yet turned into deliveries, and deliveries pending (readiness and
    metrics can show both)."""
    events = await session.scalar(select(func.count()).select_from(OutboundEvent)
                                  .where(OutboundEvent.dispatched.is_(False)))
    deliveries = await session.scalar(select(func.count()).select_from(WebhookDelivery)
                                      .where(WebhookDelivery.status == "pending"))
    return events or 0, deliveries or 0
