"""HTTP routes of payments (create, list, read, verify), refunds, and Paystack's webhook endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidSignature, Unauthorized, ValidationFailed
from app.core.net import client_ip, ip_allowed
from app.core.ratelimit import RATE_LIMITED, limiter, payments_limit, webhooks_limit
from app.core.routing import ExactJSONRoute
from app.core.schemas import Page, PageParams, page_params
from app.core.security import CurrentUser
from app.gateway.signature import verify_signature
from app.models import Payment
from app.payments import flows, service
from app.payments import gateway_refunds as refunds
from app.payments.schemas import (
    AnyPaymentType,
    PaymentCreate,
    PaymentOut,
    PaymentRefundOut,
    PaymentStatus,
    WebhookAck,
)
from app.web.deps import RuntimeDep, SessionDep, runtime_of
from app.web.idempotency import Answer, IdempotencyKey, idempotent
from app.webhooks.inbox import read_arrival, store_event

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1", tags=["payments"], dependencies=[RATE_LIMITED])
# Paystack's webhook, the busiest route, on a router of its own with no dependencies: it carries its own rate
# limit (`webhooks_limit`), so the default limit's dependency had nothing to check, and FastAPI's solving of it
# and of `RuntimeDep` took about a sixth of the API's CPU per webhook (docs/performance.md).
webhook_router = APIRouter(prefix="/v1", tags=["payments", "webhooks"])
MAX_WEBHOOK_BYTES = 1_000_000
# The webhook's answer, rendered once: FastAPI would validate and serialize the same model on every request.
WEBHOOK_ACK = WebhookAck().model_dump_json().encode()


@router.post("/payments", status_code=201, response_model=PaymentOut)
@limiter.limit(payments_limit)
async def create_payment(
    request: Request, body: PaymentCreate, principal: CurrentUser, rt: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create(answer: Answer) -> PaymentOut:
        async def written(session: AsyncSession, payment: Payment) -> None:
            await answer.record(session, PaymentOut.model_validate(payment))

        return PaymentOut.model_validate(await flows.create_payment(rt, principal, body, written=written))

    return await idempotent(rt.db, principal, idempotency_key, "POST /v1/payments", body, create)


@router.get("/payments", response_model=Page[PaymentOut])
async def list_payments(
    principal: CurrentUser,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
    status: PaymentStatus | None = None,
    payment_type: AnyPaymentType | None = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[PaymentOut]:
    rows, cursor = await service.list_payments(
        session, principal, page, status=status, payment_type=payment_type, app_id=app_id
    )
    return Page[PaymentOut](items=[PaymentOut.model_validate(p) for p in rows], next_cursor=cursor)


@router.get("/payments/{reference}", response_model=PaymentOut)
async def get_payment(reference: str, principal: CurrentUser, session: SessionDep) -> PaymentOut:
    return PaymentOut.model_validate(await service.get_payment(session, principal, reference))


@router.post("/payments/{reference}/verify", response_model=PaymentOut)
@limiter.limit(payments_limit)
async def verify_payment(request: Request, reference: str, principal: CurrentUser, rt: RuntimeDep) -> PaymentOut:
    return PaymentOut.model_validate(await flows.verify_payment(rt, principal, reference))


@router.get("/refunds/{refund_id}", response_model=PaymentRefundOut)
async def get_refund(refund_id: str, principal: CurrentUser, session: SessionDep) -> PaymentRefundOut:
    """An admin, or the payer of the refunded payment; anyone else's refund is 404."""
    return await refunds.get_refund(session, principal, refund_id)


# The endpoint reads the raw bytes itself (the signature covers them): its header and body are declared here.
WEBHOOK_OPENAPI = {
    "parameters": [{
        "name": "x-paystack-signature", "in": "header", "required": True, "schema": {"type": "string"},
        "description": "HMAC-SHA512 of the raw body with the Paystack secret key, in hex; instead of a bearer token.",
    }],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["event", "data"], "additionalProperties": True, "properties": {
            "event": {"type": "string", "description": "Paystack's event name, e.g. `charge.success`."},
            "data": {"type": "object", "additionalProperties": True, "description": "The event's object."},
        }},
        "example": {"event": "charge.success", "data": {"reference": "pay_0123456789abcdef", "status": "success",
                                                        "amount": 500000, "currency": "NGN"}},
    }}},
}


@webhook_router.post("/webhooks/paystack", response_model=WebhookAck, openapi_extra=WEBHOOK_OPENAPI)
@limiter.limit(webhooks_limit)
async def paystack_webhook(request: Request) -> Response:
    """Paystack only: signature checked on the raw bytes, event stored once, processed by the worker."""
    rt = runtime_of(request)
    settings = rt.settings
    if not ip_allowed(client_ip(request), settings.webhook_allowed_ips):
        raise Unauthorized("Webhook source address not allowed")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        raise ValidationFailed("Webhook body too large")  # refused before reading it
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise ValidationFailed("Webhook body too large")
    signature = request.headers.get("x-paystack-signature")
    if not verify_signature(body, signature, settings.paystack_secret_key.get_secret_value()):
        raise InvalidSignature()
    arrival = read_arrival(body)
    await store_event(rt, arrival)
    if arrival.unreadable is None:
        rt.notify_worker()
    return Response(WEBHOOK_ACK, media_type="application/json")
