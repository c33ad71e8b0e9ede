"""Who may call each distribution and revenue report route, per the HTTP contract (docs/api.md).

No token is 401 UNAUTHENTICATED; an object the caller may not see (another app's distribution) is
404 NOT_FOUND; an action the caller may not take on something it can see (every authenticated user
sees an app) is 403 UNAUTHORIZED.

Each role's test runs against a fresh copy of one scenario: app-1 (owner-1, 2.50% fee), investor-1 holding
3 shares (the holder), investor-2 holding none (the other investor); 1000.00 of revenue for 2025-05,
distributed, and 500.00 for 2025-06, not yet distributed. A declaration of the running month's revenue
asks the owner for a pool of 300.00.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.models.base import utcnow
from tests.authz import ERROR_CODES, ScenarioCache, call_route, role_headers
from tests.distributions.test_distributions import ADMIN, buy_shares, distribute, pay_revenue
from tests.helpers import OWNER, put_app

Auth = Callable[..., dict[str, str]]
ROLES = ("anonymous", "holder", "other_investor", "owner", "admin")
USERS = {"holder": "investor-1", "other_investor": "investor-2", "owner": OWNER, "admin": ADMIN}


@dataclass
class Scenario:
    app_id: str = "app-1"
    distribution: str = ""  # 2025-05's

    def ids(self) -> dict[str, str]:
        return self.__dict__


async def build_scenario(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> Scenario:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await buy_shares(client, app, auth, {USERS["holder"]: 3})
    await pay_revenue(client, app, owner, "1000.00", period="2025-05")
    await pay_revenue(client, app, owner, "500.00", period="2025-06")
    created = await distribute(client, owner, period="2025-05")
    assert created.status_code == 201, created.text
    return Scenario(distribution=created.json()["id"])


_scenarios: ScenarioCache[Scenario] = ScenarioCache()


@pytest.fixture
async def scenario(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> Scenario:
    return await _scenarios.get(app.state.runtime.db, lambda: build_scenario(client, app, auth))


# The running month: its holdings are today's, 3 of 1,000 shares held by investors, a pool of 300.00.
DECLARATION = {"period": utcnow().strftime("%Y-%m"), "currency": "NGN", "gross_revenue": "100000.00",
               "email": "owner@example.com"}

# (method, path, body): `{name}` placeholders are filled from the scenario.
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "dry-run distribution": ("POST", "/v1/apps/{app_id}/distributions",
                             {"period": "2025-06", "currency": "NGN", "dry_run": True}),
    "app distributions": ("GET", "/v1/apps/{app_id}/distributions", None),
    "get distribution": ("GET", "/v1/distributions/{distribution}", None),
    "distribution allocations": ("GET", "/v1/distributions/{distribution}/allocations", None),
    "my distributions": ("GET", "/v1/distributions/me", None),
    "app revenue report": ("GET", "/v1/reports/revenue/monthly?year=2025&app_id={app_id}", None),
    "app revenue report csv": ("GET", "/v1/reports/revenue/monthly?year=2025&app_id={app_id}&format=csv", None),
    "all revenue report": ("GET", "/v1/reports/revenue/monthly?year=2025", None),
    "revenue declarations": ("GET", "/v1/apps/{app_id}/revenue-declarations", None),
    # last: the ones that write
    "create distribution": ("POST", "/v1/apps/{app_id}/distributions", {"period": "2025-06", "currency": "NGN"}),
    "declare revenue": ("POST", "/v1/apps/{app_id}/revenue-declarations", DECLARATION),
}

# Expected status per role, in ROLES order after `anonymous` (always 401):
#                              holder other owner admin
EXPECTED: dict[str, tuple[int, int, int, int]] = {
    "dry-run distribution":     (403, 403, 200, 200),  # the app is visible to all: 403, not 404
    "app distributions":        (403, 403, 200, 200),
    "get distribution":         (404, 404, 200, 200),  # the app's owner and admins; hidden from everyone else
    "distribution allocations": (404, 404, 200, 200),  # a holder sees their own through /distributions/me
    "my distributions":         (200, 200, 200, 200),  # each caller's own allocations
    "app revenue report":       (403, 403, 200, 200),
    "app revenue report csv":   (403, 403, 200, 200),
    "all revenue report":       (403, 403, 403, 200),  # without app_id: admins only
    "revenue declarations":     (403, 403, 200, 200),
    "create distribution":      (403, 403, 201, 201),
    "declare revenue":          (403, 403, 201, 201),  # a holder is not the owner: 403 (the app is visible)
}


def _headers(auth: Auth, role: str) -> dict[str, str]:
    return role_headers(auth, USERS, role)


def test_the_table_covers_every_route() -> None:
    assert set(EXPECTED) == set(ROUTES)


async def _call(client: httpx.AsyncClient, auth: Auth, role: str, route: str, ids: dict[str, str]) -> httpx.Response:
    return await call_route(client, ROUTES[route], _headers(auth, role), ids)


def _mismatch(route: str, expected: int, response: httpx.Response) -> str | None:
    if response.status_code != expected:
        return f"{route}: expected {expected}, got {response.status_code} {response.text[:200]}"
    if expected in ERROR_CODES and response.json()["error"]["code"] != ERROR_CODES[expected]:
        return f"{route}: expected {ERROR_CODES[expected]}, got {response.text[:200]}"
    return None


async def test_anonymous_callers_are_unauthenticated(client: httpx.AsyncClient, auth: Auth) -> None:
    """401 comes before any lookup: placeholder ids, nothing built."""
    ids = {name: f"{name}-x" for name in Scenario().ids()}
    mismatches = [_mismatch(route, 401, await _call(client, auth, "anonymous", route, ids)) for route in ROUTES]
    assert [m for m in mismatches if m] == []


# All routes of one role in one test (on one copy of the scenario, the only writing route last):
# every mismatch is reported at once.
@pytest.mark.parametrize("role", ROLES[1:])
async def test_route_authorization(role: str, scenario: Scenario, client: httpx.AsyncClient, auth: Auth) -> None:
    expected = {route: statuses[ROLES.index(role) - 1] for route, statuses in EXPECTED.items()}
    mismatches = [_mismatch(route, expected[route], await _call(client, auth, role, route, scenario.ids()))
                  for route in ROUTES]
    assert [m for m in mismatches if m] == []

    # /distributions/me: the holder finds their allocation, everyone else nothing of app-1's
    items = (await client.get("/v1/distributions/me", headers=_headers(auth, role))).json()["items"]
    if role == "holder":
        assert [(i["distribution_id"], i["app_id"], i["period"], i["amount"], i["currency"]) for i in items] == [
            (scenario.distribution, "app-1", "2025-05", "975.00", "NGN")]  # 1000.00 less the 2.50% fee
    else:
        assert items == []

    # unknown ids are not found, whoever asks
    for method, path, body in [
        ("GET", "/v1/distributions/dst-missing", None),
        ("GET", "/v1/distributions/dst-missing/allocations", None),
        ("GET", "/v1/apps/app-missing/distributions", None),
        ("POST", "/v1/apps/app-missing/distributions", {"period": "2025-06", "currency": "NGN"}),
        ("POST", "/v1/apps/app-missing/distributions", {"period": "2025-06", "currency": "NGN", "dry_run": True}),
        ("GET", "/v1/reports/revenue/monthly?year=2025&app_id=app-missing", None),
        ("GET", "/v1/apps/app-missing/revenue-declarations", None),
        ("POST", "/v1/apps/app-missing/revenue-declarations", DECLARATION),
    ]:
        response = await client.request(method, path, headers=_headers(auth, role), json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
