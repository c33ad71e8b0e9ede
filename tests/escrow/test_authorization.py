"""Who may call each escrow, dispute and payout route, per the HTTP contract (docs/api.md).

No token is 401 UNAUTHENTICATED; someone else's object the caller may not see is
404 NOT_FOUND; an action the caller may not take on something it can see (an app,
its own deposit, a release of an app it oversees) is 403 UNAUTHORIZED.

Each case runs against a fresh copy of one scenario: app-1 (owner-1, approvers
approver-1/approver-2, 2 approvals), investor-1's paid deposit of 10000.00 (the
deposit), investor-2's of 2000.00 (the "other investor"), milestones at 10% each:
one released (owner's payout failed at the gateway), one approved, one pending
approval, one completed without a release, one pending; and investor-1's open
dispute of 500.00.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.escrow.tasks import handle_chargeback
from app.models import Dispute
from tests.authz import ERROR_CODES, ScenarioCache, call_route, role_headers
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.helpers import APPROVERS, OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
ROLES = ("anonymous", "investor", "other_investor", "owner", "approver", "admin")
USERS = {"investor": "investor-1", "other_investor": "investor-2", "owner": OWNER, "approver": APPROVERS[0],
         "admin": "admin-1"}


@dataclass
class Scenario:
    app_id: str = "app-1"
    deposit: str = ""            # investor-1's deposit
    released_milestone: str = ""
    approved_release: str = ""   # waits for an admin to execute it
    pending_release: str = ""    # waits for approvals
    completed_milestone: str = ""  # completed, nothing asked for it yet
    pending_milestone: str = ""
    dispute: str = ""
    failed_payout: str = ""      # the owner's, failed at the gateway

    def ids(self) -> dict[str, str]:
        return self.__dict__


async def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def _release(client: httpx.AsyncClient, owner: dict[str, str], milestone_id: str) -> dict[str, Any]:
    return await _created(await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": milestone_id}))


async def build_scenario(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> Scenario:
    admin, owner = auth(USERS["admin"], admin=True), auth(OWNER)
    approvers = [auth(a) for a in APPROVERS]
    investor, other = auth(USERS["investor"]), auth(USERS["other_investor"])
    s = Scenario()
    await put_app(client, admin)
    await pay(client, app, await invest(client, investor, shares=10))
    await pay(client, app, await invest(client, other, shares=2))
    deposits = (await client.get("/v1/escrow/transactions?type=deposit", headers=investor)).json()["items"]
    s.deposit = deposits[0]["id"]

    released, approved, pending, s_completed, s_pending = [await milestone(client, owner, "10") for _ in range(5)]
    for m in (released, approved, pending, s_completed):
        await complete(client, owner, m["id"])
    s.released_milestone, s.completed_milestone = released["id"], s_completed["id"]
    s.pending_milestone = s_pending["id"]

    first = await _release(client, owner, released["id"])
    second = await _release(client, owner, approved["id"])
    s.pending_release = (await _release(client, owner, pending["id"]))["id"]
    s.approved_release = second["id"]
    for release in (first, second):
        for who in approvers:
            await _created(await approve(client, who, release["id"]))

    await register_payout_account(client, owner)
    app.state.sandbox.faults.transfer_outcome_next("failed")
    await _created(await client.post(f"/v1/escrow/releases/{first['id']}/execute", headers=admin))
    await settle(app)
    payouts = (await client.get("/v1/payouts/me", headers=owner)).json()["items"]
    assert [p["status"] for p in payouts] == ["failed"], payouts
    s.failed_payout = payouts[0]["id"]

    dispute = await client.post("/v1/disputes", headers=investor,
                                json={"transaction_id": s.deposit, "reason": "not delivered", "amount": "500.00"})
    s.dispute = (await _created(dispute))["id"]
    return s


# The scenario is built through the API once per run; every other test gets a copy of its rows
# in its own fresh database, which keeps the ~140 cases below fast.
_scenarios: ScenarioCache[Scenario] = ScenarioCache()


@pytest.fixture
async def scenario(request: pytest.FixtureRequest, client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> Scenario:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("role") == "anonymous":
        # 401 comes before any lookup: placeholder ids, no need to build anything
        return Scenario(**{name: f"{name}-x" for name in Scenario().ids()})
    return await _scenarios.get(app.state.runtime.db, lambda: build_scenario(client, app, auth))


# (method, path, body): `{name}` placeholders are filled from the scenario.
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "create milestone": ("POST", "/v1/apps/{app_id}/milestones", {"title": "more", "release_percentage": "5"}),
    "list milestones": ("GET", "/v1/apps/{app_id}/milestones", None),
    "complete milestone": ("POST", "/v1/milestones/{pending_milestone}/complete", {"evidence": "done"}),
    "create release": ("POST", "/v1/escrow/releases", {"milestone_id": "{completed_milestone}"}),
    "list releases": ("GET", "/v1/escrow/releases", None),
    "get release": ("GET", "/v1/escrow/releases/{pending_release}", None),
    "approve release": ("POST", "/v1/escrow/releases/{pending_release}/approvals", {"decision": "approve"}),
    "execute release": ("POST", "/v1/escrow/releases/{approved_release}/execute", None),
    "refund deposit": ("POST", "/v1/escrow/transactions/{deposit}/refunds", {"amount": "100.00", "reason": "asked"}),
    "list transactions": ("GET", "/v1/escrow/transactions", None),
    "get transaction": ("GET", "/v1/escrow/transactions/{deposit}", None),
    "app escrow": ("GET", "/v1/apps/{app_id}/escrow", None),
    "app statement": ("GET", "/v1/apps/{app_id}/escrow/statement", None),
    "open dispute": ("POST", "/v1/disputes", {"transaction_id": "{deposit}", "reason": "late", "amount": "100.00"}),
    "list disputes": ("GET", "/v1/disputes", None),
    "get dispute": ("GET", "/v1/disputes/{dispute}", None),
    "resolve dispute": ("POST", "/v1/disputes/{dispute}/resolve", {"outcome": "dismiss", "note": "no case"}),
    "put payout account": ("PUT", "/v1/payout-accounts/me",
                           {"bank_code": "057", "account_number": "0123456789", "currency": "NGN"}),
    "get payout account": ("GET", "/v1/payout-accounts/me", None),
    "my payouts": ("GET", "/v1/payouts/me", None),
    "all payouts": ("GET", "/v1/payouts", None),
    "retry payout": ("POST", "/v1/payouts/{failed_payout}/retry", None),
    "finalize payout": ("POST", "/v1/payouts/{failed_payout}/finalize", {"otp": "123456"}),
    "resend payout otp": ("POST", "/v1/payouts/{failed_payout}/resend-otp", None),
    "integrity": ("GET", "/v1/admin/integrity", None),
}

# Expected status per role, in ROLES order after `anonymous` (always 401):
#                        investor other owner approver admin
EXPECTED: dict[str, tuple[int, int, int, int, int]] = {
    "create milestone":   (403, 403, 201, 403, 201),
    "list milestones":    (200, 200, 200, 200, 200),  # the contract names no role: any authenticated user
    "complete milestone": (403, 403, 200, 403, 403),  # the owner only, not even an admin
    "create release":     (403, 403, 201, 403, 201),
    "list releases":      (200, 200, 200, 200, 200),  # filtered: see test_lists_show_only_what_each_role_may_see
    "get release":        (404, 404, 200, 200, 200),  # the contract is silent: readable by whoever oversees the app
    "approve release":    (404, 404, 403, 200, 200),
    "execute release":    (404, 404, 403, 403, 200),
    "refund deposit":     (403, 404, 403, 403, 201),  # the investor and the app's overseers see the deposit
    "list transactions":  (200, 200, 200, 200, 200),
    "get transaction":    (200, 404, 200, 200, 200),
    "app escrow":         (403, 403, 200, 200, 200),  # the app is visible to all: 403, not 404
    "app statement":      (403, 403, 200, 200, 200),
    "open dispute":       (201, 404, 403, 403, 403),  # the deposit's investor only
    "list disputes":      (200, 200, 200, 200, 200),
    "get dispute":        (200, 404, 200, 200, 200),  # the contract is silent: the investor and the app's overseers
    "resolve dispute":    (403, 404, 403, 403, 200),
    "put payout account": (200, 200, 200, 200, 200),
    "get payout account": (200, 200, 200, 200, 200),  # own accounts; an empty list when none is registered
    "my payouts":         (200, 200, 200, 200, 200),
    "all payouts":        (403, 403, 403, 403, 200),
    "retry payout":       (404, 404, 403, 404, 200),  # the owner's own payout is visible to the owner
    "finalize payout":    (404, 404, 403, 404, 409),  # an admin's call reaches it: a failed payout awaits no OTP
    "resend payout otp":  (404, 404, 403, 404, 409),
    "integrity":          (403, 403, 403, 403, 200),
}

CASES = [
    pytest.param(route, role, 401 if role == "anonymous" else EXPECTED[route][ROLES.index(role) - 1],
                 id=f"{route}-{role}")
    for route in ROUTES
    for role in ROLES
]


def _headers(auth: Auth, role: str) -> dict[str, str]:
    return role_headers(auth, USERS, role)


def test_the_table_covers_every_route() -> None:
    assert set(EXPECTED) == set(ROUTES)


@pytest.mark.parametrize(("route", "role", "expected"), CASES)
async def test_route_authorization(
    route: str, role: str, expected: int, scenario: Scenario, client: httpx.AsyncClient, auth: Auth,
) -> None:
    response = await call_route(client, ROUTES[route], _headers(auth, role), scenario.ids())

    assert response.status_code == expected, response.text
    if expected in ERROR_CODES:
        assert response.json()["error"]["code"] == ERROR_CODES[expected], response.text


# What each role finds in the lists (the lists are open to every authenticated user).
VISIBLE: dict[str, dict[str, Any]] = {
    "investor": {"releases": 0, "deposits": {"investor-1"}, "disputes": 1, "payouts": 0},
    "other_investor": {"releases": 0, "deposits": {"investor-2"}, "disputes": 0, "payouts": 0},
    "owner": {"releases": 3, "deposits": {"investor-1", "investor-2"}, "disputes": 1, "payouts": 1},
    "approver": {"releases": 3, "deposits": {"investor-1", "investor-2"}, "disputes": 1, "payouts": 0},
    "admin": {"releases": 3, "deposits": {"investor-1", "investor-2"}, "disputes": 1, "payouts": 0},
}


@pytest.mark.parametrize("role", list(VISIBLE))
async def test_lists_show_only_what_each_role_may_see(
    role: str, scenario: Scenario, client: httpx.AsyncClient, auth: Auth
) -> None:
    headers, want = _headers(auth, role), VISIBLE[role]

    async def items(path: str) -> list[dict[str, Any]]:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    assert len(await items("/v1/escrow/releases")) == want["releases"]
    deposits = await items("/v1/escrow/transactions?type=deposit")
    assert {d["investor_id"] for d in deposits} == want["deposits"]
    assert all(t["investor_id"] == USERS["investor"]
               for t in await items("/v1/escrow/transactions")) == (role == "investor")
    assert len(await items("/v1/disputes")) == want["disputes"]
    assert len(await items("/v1/payouts/me")) == want["payouts"]
    if role == "admin":
        assert [p["user_id"] for p in await items("/v1/payouts")] == [OWNER]


@pytest.mark.parametrize("role", ["investor", "owner", "approver", "admin"])
async def test_unknown_ids_are_not_found(role: str, scenario: Scenario, client: httpx.AsyncClient,
                                         auth: Auth) -> None:
    headers = _headers(auth, role)
    for method, path, body in [
        ("GET", "/v1/escrow/releases/rel-missing", None),
        ("POST", "/v1/escrow/releases/rel-missing/approvals", {"decision": "approve"}),
        ("POST", "/v1/escrow/releases/rel-missing/execute", None),
        ("GET", "/v1/escrow/transactions/esc-missing", None),
        ("POST", "/v1/milestones/ms-missing/complete", {"evidence": "x"}),
        ("POST", "/v1/escrow/releases", {"milestone_id": "ms-missing"}),
        ("GET", "/v1/apps/app-missing/escrow", None),
        ("GET", "/v1/disputes/dsp-missing", None),
        ("POST", "/v1/disputes/dsp-missing/resolve", {"outcome": "dismiss"}),
    ]:
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"


# ---- dispute resolution switched off --------------------------------------------------------------


class TestDisputesDisabled:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"enable_dispute_resolution": False}

    async def test_every_dispute_route_is_feature_disabled(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth
    ) -> None:
        admin, investor = auth("admin-1", admin=True), auth("investor-1")
        await put_app(client, admin)
        payment = await invest(client, investor, shares=2)
        await pay(client, app, payment)
        deposit = (await client.get("/v1/escrow/transactions", headers=investor)).json()["items"][0]["id"]
        # a chargeback still opens a dispute by itself, whatever the flag says
        assert await handle_chargeback(app.state.runtime, {"id": 77, "transaction_reference": payment["reference"]}) \
            == "processed"
        async with app.state.runtime.db.unit_of_work() as session:
            dispute_id = await session.scalar(select(Dispute.id))

        calls = [
            ("POST", "/v1/disputes", {"transaction_id": deposit, "reason": "late"}),
            ("GET", "/v1/disputes", None),
            ("GET", f"/v1/disputes/{dispute_id}", None),
            ("POST", f"/v1/disputes/{dispute_id}/resolve", {"outcome": "dismiss"}),
            ("GET", "/v1/disputes/dsp-missing", None),
        ]
        for who in (investor, admin, auth(OWNER), auth("stranger")):
            for method, path, body in calls:
                response = await client.request(method, path, headers=who, json=body)
                assert response.status_code == 403, (path, response.text)
                assert response.json()["error"]["code"] == "FEATURE_DISABLED", response.text
        for method, path, body in calls:  # authentication still comes first
            response = await client.request(method, path, json=body)
            assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"
