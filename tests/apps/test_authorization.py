"""Who may call each app registry route: `PUT /v1/apps/{id}` (admin or service), `GET /v1/apps/{id}` (anyone
signed in) and `GET /v1/apps` (an admin: every app; anyone else: the apps they own or approve).

Scenario: app-1 (owner-1, approvers approver-1 and approver-2) and app-2 (owner-2, approver-1 only).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.authz import ERROR_CODES
from tests.helpers import put_app

Auth = Callable[..., dict[str, str]]
ROLES = ("anonymous", "investor", "owner", "approver", "service", "admin")
USERS = {"investor": "investor-1", "owner": "owner-1", "approver": "approver-2", "service": "platform",
         "admin": "admin-1"}
APP_BODY = {"name": "Farm Tools", "owner_id": "owner-1", "currency": "NGN", "share_price": "1000.00",
            "total_shares": 1000}

ROUTES: dict[str, tuple[str, str]] = {
    "list apps": ("GET", "/v1/apps"),
    "read app": ("GET", "/v1/apps/app-1"),
    "upsert app": ("PUT", "/v1/apps/app-1"),
}
#                           anonymous investor owner approver service admin
EXPECTED: dict[str, tuple[int, int, int, int, int, int]] = {
    "list apps":            (401, 200, 200, 200, 200, 200),  # what each one lists: test_each_role_lists_its_apps
    "read app":             (401, 200, 200, 200, 200, 200),
    "upsert app":           (401, 403, 403, 403, 200, 200),
}
# GET /v1/apps: the ids each role finds.
LISTED: dict[str, list[str]] = {
    "investor": [],
    "owner": ["app-1"],
    "approver": ["app-1"],  # approver-2 approves app-1 only
    "service": [],  # the platform service writes apps; it owns and approves none
    "admin": ["app-2", "app-1"],
}


def headers_for(auth: Auth, role: str) -> dict[str, str]:
    if role == "anonymous":
        return {}
    return auth(USERS[role], admin=role == "admin", service=role == "service")


@pytest.fixture
async def two_apps(client: httpx.AsyncClient, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin, "app-1")
    await put_app(client, admin, "app-2", owner_id="owner-2", approvers=["approver-1"], required_approvals=1)


def test_the_table_covers_every_route() -> None:
    assert set(EXPECTED) == set(ROUTES)
    assert set(LISTED) == set(ROLES[1:])


@pytest.mark.parametrize("role", ROLES)
async def test_route_authorization(role: str, two_apps: None, client: httpx.AsyncClient, auth: Auth) -> None:
    mismatches = []
    for route, (method, path) in ROUTES.items():
        expected = EXPECTED[route][ROLES.index(role)]
        body = APP_BODY if method == "PUT" else None
        response = await client.request(method, path, json=body, headers=headers_for(auth, role))
        if response.status_code != expected or (
            expected in ERROR_CODES and response.json()["error"]["code"] != ERROR_CODES[expected]
        ):
            mismatches.append(f"{route}: expected {expected}, got {response.status_code} {response.text[:200]}")
    assert mismatches == []


@pytest.mark.parametrize("role", ROLES[1:])
async def test_each_role_lists_its_apps(role: str, two_apps: None, client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get("/v1/apps", headers=headers_for(auth, role))

    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == LISTED[role]
    assert response.json()["next_cursor"] is None
