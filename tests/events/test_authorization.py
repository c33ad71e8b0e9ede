"""Who may call each webhook endpoint and event route: no token is 401 UNAUTHENTICATED; the endpoint routes
and `GET /v1/events` are an admin's (403 UNAUTHORIZED for anyone else, before any lookup); everyone signed in
reads the events about themselves through `GET /v1/events/me`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from app.events.record import emit
from app.models import WebhookDelivery
from app.models.base import utcnow
from tests.authz import ERROR_CODES, call_route, role_headers
from tests.events.support import RECEIVER_URL

Auth = Callable[..., dict[str, str]]
ROLES = ("anonymous", "user", "admin")
USERS = {"user": "investor-1", "admin": "admin-1"}
ENDPOINT = "/v1/admin/webhook-endpoints/{endpoint}"

ROUTES = {
    "list endpoints": ("GET", "/v1/admin/webhook-endpoints", None),
    "get endpoint": ("GET", ENDPOINT, None),
    "update endpoint": ("PATCH", ENDPOINT, {"description": "changed"}),
    "deliveries": ("GET", ENDPOINT + "/deliveries", None),
    "retry delivery": ("POST", ENDPOINT + "/deliveries/{delivery}/retry", None),
    "list events": ("GET", "/v1/events", None),
    "my events": ("GET", "/v1/events/me", None),
    "create endpoint": ("POST", "/v1/admin/webhook-endpoints", {"url": RECEIVER_URL, "events": ["*"]}),
    "delete endpoint": ("DELETE", ENDPOINT, None),  # last: it removes what the others use
}
#                                  user admin
EXPECTED: dict[str, tuple[int, int]] = {
    "list endpoints":  (403, 200),
    "get endpoint":    (403, 200),
    "update endpoint": (403, 200),
    "deliveries":      (403, 200),
    "retry delivery":  (403, 200),
    "list events":     (403, 200),
    "my events":       (200, 200),
    "create endpoint": (403, 201),
    "delete endpoint": (403, 204),
}


def test_the_table_covers_every_route() -> None:
    assert set(EXPECTED) == set(ROUTES)


async def scenario(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> dict[str, str]:
    created = await client.post("/v1/admin/webhook-endpoints", headers=auth("admin-1", admin=True),
                                json={"url": RECEIVER_URL, "events": ["*"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()["id"]
    async with app.state.runtime.db.unit_of_work() as session:
        event_id = emit(session, "payout.paid", {"id": "po_1"}, subjects=["investor-1"])
        session.add(WebhookDelivery(id="whd_1", endpoint_id=endpoint, event_id=event_id, event_type="payout.paid",
                                    status="failed", attempts=1, available_at=utcnow(), give_up_at=utcnow()))
    return {"endpoint": endpoint, "delivery": "whd_1"}


@pytest.mark.parametrize("role", ROLES)
async def test_route_authorization(role: str, client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    ids = await scenario(client, app, auth)
    mismatches = []
    for route, statuses in EXPECTED.items():
        expected = 401 if role == "anonymous" else statuses[ROLES.index(role) - 1]
        response = await call_route(client, ROUTES[route], role_headers(auth, USERS, role), ids)
        if response.status_code != expected or (
                expected in ERROR_CODES and response.json()["error"]["code"] != ERROR_CODES[expected]):
            mismatches.append(f"{route}: expected {expected}, got {response.status_code} {response.text[:200]}")
    assert mismatches == []


async def test_unknown_ids_are_not_found(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    ids = await scenario(client, app, auth)
    for method, path in [("GET", "/v1/admin/webhook-endpoints/we_missing"),
                         ("PATCH", "/v1/admin/webhook-endpoints/we_missing"),
                         ("DELETE", "/v1/admin/webhook-endpoints/we_missing"),
                         ("GET", "/v1/admin/webhook-endpoints/we_missing/deliveries"),
                         ("POST", f"/v1/admin/webhook-endpoints/{ids['endpoint']}/deliveries/whd_missing/retry"),
                         ("POST", "/v1/admin/webhook-endpoints/we_missing/deliveries/whd_1/retry")]:
        response = await client.request(method, path, headers=admin, json={} if method == "PATCH" else None)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "NOT_FOUND"), (method, path)
