"""Who may call each shares and share-transfer route, per the HTTP contract (docs/api.md).

No token is 401 UNAUTHENTICATED; someone else's transfer is 404 NOT_FOUND; an action the caller may not
take on something it can see (an app's cap table, a transfer an admin reads) is 403 UNAUTHORIZED.

Each case runs against a fresh copy of one scenario: app-1 (owner-1), seller-1 holding 10 paid shares,
investor-2 (the "other investor") holding 2, and seller-1's pending offer of 2 shares to buyer-1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.authz import ScenarioCache, call_route, role_headers
from tests.helpers import OWNER, put_app
from tests.shares.test_transfers import holder, offered

Auth = Callable[..., dict[str, str]]
ROLES = ("anonymous", "seller", "buyer", "other_investor", "owner", "admin")
USERS = {"seller": "seller-1", "buyer": "buyer-1", "other_investor": "investor-2", "owner": OWNER,
         "admin": "admin-1"}


@dataclass
class Scenario:
    app_id: str = "app-1"
    transfer: str = ""  # seller-1 -> buyer-1, 2 shares, pending

    def ids(self) -> dict[str, str]:
        return self.__dict__


async def build_scenario(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> Scenario:
    await put_app(client, auth(USERS["admin"], admin=True))
    await holder(client, app, auth(USERS["seller"]), 10)
    await holder(client, app, auth(USERS["other_investor"]), 2)
    transfer = await offered(client, auth(USERS["seller"]), buyer_id=USERS["buyer"], shares=2)
    return Scenario(transfer=transfer["id"])


_scenarios: ScenarioCache[Scenario] = ScenarioCache()


@pytest.fixture
async def scenario(request: pytest.FixtureRequest, client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> Scenario:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("role") == "anonymous":
        return Scenario(transfer="stf-x")  # 401 comes before any lookup
    return await _scenarios.get(app.state.runtime.db, lambda: build_scenario(client, app, auth))


PAY = {"payment_type": "share_transfer", "app_id": "{app_id}", "email": "b@example.com", "currency": "NGN",
       "share_transfer_id": "{transfer}"}
# (method, path, body): `{name}` placeholders are filled from the scenario.
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "offer shares": ("POST", "/v1/share-transfers",
                     {"app_id": "{app_id}", "buyer_id": "newcomer-1", "shares": 1, "price_per_share": "900.00"}),
    "list transfers": ("GET", "/v1/share-transfers", None),
    "get transfer": ("GET", "/v1/share-transfers/{transfer}", None),
    "cancel transfer": ("POST", "/v1/share-transfers/{transfer}/cancel", None),
    "pay transfer": ("POST", "/v1/payments", PAY),
    "cap table": ("GET", "/v1/apps/{app_id}/cap-table", None),
    "my holdings": ("GET", "/v1/holdings/me", None),
}

# Expected (status, error code) per role, in ROLES order after `anonymous` (always 401):
#   seller, buyer, other investor, owner, admin
Expected = tuple[int, str | None]
OK, CREATED = (200, None), (201, None)
FORBIDDEN, HIDDEN = (403, "UNAUTHORIZED"), (404, "NOT_FOUND")
NO_SHARES = (409, "SHARES_UNAVAILABLE")
EXPECTED: dict[str, tuple[Expected, Expected, Expected, Expected, Expected]] = {
    # anyone sells what they hold: without unreserved shares it is SHARES_UNAVAILABLE, not a permission matter
    "offer shares":    (CREATED, NO_SHARES, CREATED, NO_SHARES, NO_SHARES),
    "list transfers":  (OK, OK, OK, OK, OK),  # filtered: see test_lists_show_only_what_each_role_may_see
    "get transfer":    (OK, OK, HIDDEN, HIDDEN, OK),
    "cancel transfer": (OK, OK, HIDDEN, HIDDEN, FORBIDDEN),  # seller or buyer only; the admin sees it
    "pay transfer":    (FORBIDDEN, CREATED, HIDDEN, HIDDEN, FORBIDDEN),  # the buyer only
    "cap table":       (FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK),  # the app is visible to all: 403, not 404
    "my holdings":     (OK, OK, OK, OK, OK),
}

CASES = [
    pytest.param(route, role, (401, "UNAUTHENTICATED") if role == "anonymous"
                 else EXPECTED[route][ROLES.index(role) - 1], id=f"{route}-{role}")
    for route in ROUTES
    for role in ROLES
]


def _headers(auth: Auth, role: str) -> dict[str, str]:
    return role_headers(auth, USERS, role)


def test_the_table_covers_every_route() -> None:
    assert set(EXPECTED) == set(ROUTES)


@pytest.mark.parametrize(("route", "role", "expected"), CASES)
async def test_route_authorization(
    route: str, role: str, expected: Expected, scenario: Scenario, client: httpx.AsyncClient, auth: Auth,
) -> None:
    response = await call_route(client, ROUTES[route], _headers(auth, role), scenario.ids())

    status, code = expected
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code, response.text


# What each role finds: transfer list and holdings (open to every authenticated user, filtered).
VISIBLE: dict[str, dict[str, Any]] = {
    "seller": {"transfers": 1, "holdings": [("app-1", 10, 2)]},
    "buyer": {"transfers": 1, "holdings": []},
    "other_investor": {"transfers": 0, "holdings": [("app-1", 2, 0)]},
    "owner": {"transfers": 0, "holdings": []},
    "admin": {"transfers": 1, "holdings": []},
}


@pytest.mark.parametrize("role", list(VISIBLE))
async def test_lists_show_only_what_each_role_may_see(
    role: str, scenario: Scenario, client: httpx.AsyncClient, auth: Auth
) -> None:
    headers, want = _headers(auth, role), VISIBLE[role]
    transfers = (await client.get("/v1/share-transfers", headers=headers)).json()["items"]
    assert [t["id"] for t in transfers] == [scenario.transfer] * want["transfers"]
    items = (await client.get("/v1/holdings/me", headers=headers)).json()["items"]
    assert [(h["app_id"], h["shares"], h["reserved_shares"]) for h in items] == want["holdings"]


@pytest.mark.parametrize("role", ["seller", "buyer", "owner", "admin"])
async def test_unknown_ids_are_not_found(role: str, scenario: Scenario, client: httpx.AsyncClient,
                                         auth: Auth) -> None:
    headers = _headers(auth, role)
    for method, path, body in [
        ("GET", "/v1/share-transfers/stf-missing", None),
        ("POST", "/v1/share-transfers/stf-missing/cancel", None),
        ("GET", "/v1/apps/app-missing/cap-table", None),
        ("POST", "/v1/share-transfers",
         {"app_id": "app-missing", "buyer_id": "x", "shares": 1, "price_per_share": "1.00"}),
        ("POST", "/v1/payments", {**PAY, "app_id": "app-1", "share_transfer_id": "stf-missing"}),
    ]:
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
