"""Who may call each payout-account route: a payout account is its holder's alone. No token is 401; another
person's account is 404 NOT_FOUND, admins included (an admin manages payouts, not people's accounts).

The scenario: investor-1 (the holder) with two NGN accounts, the default and another one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.authz import ERROR_CODES, call_route, role_headers

Auth = Callable[..., dict[str, str]]
ROLES = ("anonymous", "holder", "other_investor", "admin")
USERS = {"holder": "investor-1", "other_investor": "investor-2", "admin": "admin-1"}
NEW_ACCOUNT = {"currency": "NGN", "type": "nuban", "bank_code": "044", "account_number": "0111111111"}

ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "banks": ("GET", "/v1/banks?currency=NGN", None),
    "my accounts": ("GET", "/v1/payout-accounts/me", None),
    "add account": ("POST", "/v1/payout-accounts", NEW_ACCOUNT),
    "put my account": ("PUT", "/v1/payout-accounts/me", {k: NEW_ACCOUNT[k] for k in
                                                         ("currency", "bank_code", "account_number")}),
    "make default": ("POST", "/v1/payout-accounts/{other}/default", None),
    # last: it removes the account the others use
    "delete account": ("DELETE", "/v1/payout-accounts/{other}", None),
}

# Expected status per role, in ROLES order after `anonymous` (always 401):
#                   holder other admin
EXPECTED: dict[str, tuple[int, int, int]] = {
    "banks":          (200, 200, 200),
    "my accounts":    (200, 200, 200),  # each caller's own
    "add account":    (201, 201, 201),  # each caller's own
    "put my account": (200, 200, 200),
    "make default":   (200, 404, 404),
    "delete account": (204, 404, 404),
}


def test_the_table_covers_every_route() -> None:
    assert set(EXPECTED) == set(ROUTES)


async def scenario(client: httpx.AsyncClient, auth: Auth) -> dict[str, str]:
    holder = auth(USERS["holder"])
    ids = {}
    for name, number in (("default", "0123456789"), ("other", "0987654321")):
        response = await client.post("/v1/payout-accounts", headers=holder,
                                     json={"currency": "NGN", "type": "nuban", "bank_code": "057",
                                           "account_number": number})
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    return ids


def _mismatch(route: str, expected: int, response: httpx.Response) -> str | None:
    if response.status_code != expected:
        return f"{route}: expected {expected}, got {response.status_code} {response.text[:200]}"
    if expected in ERROR_CODES and response.json()["error"]["code"] != ERROR_CODES[expected]:
        return f"{route}: expected {ERROR_CODES[expected]}, got {response.text[:200]}"
    return None


async def test_anonymous_callers_are_unauthenticated(client: httpx.AsyncClient, auth: Auth) -> None:
    ids = {"default": "pa-x", "other": "pa-y"}
    mismatches = [_mismatch(route, 401, await call_route(client, ROUTES[route], {}, ids)) for route in ROUTES]
    assert [m for m in mismatches if m] == []


@pytest.mark.parametrize("role", ROLES[1:])
async def test_route_authorization(role: str, client: httpx.AsyncClient, auth: Auth) -> None:
    ids = await scenario(client, auth)
    headers = role_headers(auth, USERS, role)
    mismatches = [
        _mismatch(route, EXPECTED[route][ROLES.index(role) - 1],
                  await call_route(client, ROUTES[route], headers, ids))
        for route in ROUTES
    ]
    assert [m for m in mismatches if m] == []
    # whatever was refused left the holder's accounts as they were
    listed = (await client.get("/v1/payout-accounts/me", headers=auth(USERS["holder"]))).json()["items"]
    if role != "holder":
        assert {a["id"]: a["is_default"] for a in listed} == {ids["default"]: True, ids["other"]: False}
    else:
        assert ids["other"] not in {a["id"] for a in listed}
