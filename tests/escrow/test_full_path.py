"""The escrow lifecycle over HTTP with the sandbox: invest, milestones, approvals, release, payout, statement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import APPROVERS, OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]


async def milestone(client: httpx.AsyncClient, owner: dict[str, str], percentage: str, app_id: str = "app-1") -> dict:
    response = await client.post(f"/v1/apps/{app_id}/milestones", headers=owner,
                                 json={"title": f"{percentage}% done", "release_percentage": percentage})
    assert response.status_code == 201, response.text
    return response.json()


async def complete(client: httpx.AsyncClient, owner: dict[str, str], milestone_id: str) -> None:
    response = await client.post(f"/v1/milestones/{milestone_id}/complete", headers=owner,
                                 json={"evidence": "shipped"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"


async def approve(client: httpx.AsyncClient, who: dict[str, str], release_id: str, decision: str = "approve") -> Any:
    return await client.post(f"/v1/escrow/releases/{release_id}/approvals", headers=who, json={"decision": decision})


async def register_payout_account(client: httpx.AsyncClient, who: dict[str, str]) -> dict:
    response = await client.put("/v1/payout-accounts/me", headers=who,
                                json={"bank_code": "057", "account_number": "0123456789", "currency": "NGN"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"escrow_release_threshold": "10000"}


async def test_full_escrow_path(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    admin, owner = auth("admin-1", admin=True), auth(OWNER)
    approver_1, approver_2 = (auth(a) for a in APPROVERS)
    investors = [auth(f"investor-{i}") for i in range(3)]
    await put_app(client, admin)
    for i, investor in enumerate(investors):
        await pay(client, app, await invest(client, investor, shares=[3, 5, 9][i]))  # 3000 + 5000 + 9000

    first, second, third = [await milestone(client, owner, p) for p in ("25", "25", "50")]
    too_much = await client.post("/v1/apps/app-1/milestones", headers=owner,
                                 json={"title": "extra", "release_percentage": "0.01"})
    assert too_much.status_code == 422 and too_much.json()["error"]["code"] == "VALIDATION_ERROR"

    early = await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]})
    assert early.status_code == 409 and early.json()["error"]["code"] == "INVALID_STATE"
    await complete(client, owner, first["id"])

    created = await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]})
    assert created.status_code == 201, created.text
    release = created.json()
    assert release["status"] == "pending_approval"
    assert release["amount"] == "4250.00"  # 25% of 17000
    assert sorted(i["amount"] for i in release["items"]) == ["1250.00", "2250.00", "750.00"]
    assert release["required_approvals"] == 2

    assert (await approve(client, approver_1, release["id"])).json()["status"] == "pending_approval"
    twice = await approve(client, approver_1, release["id"])
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "INVALID_STATE"
    assert (await approve(client, approver_2, release["id"])).json()["status"] == "approved"

    not_admin = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=owner)
    assert not_admin.status_code == 403
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    assert executed.json()["status"] == "released"

    # the owner has no payout account yet: the money waits as a pending payout
    payouts = (await client.get("/v1/payouts/me", headers=owner)).json()["items"]
    assert [(p["amount"], p["status"], p["awaiting_payout_account"]) for p in payouts] == [
        ("4250.00", "awaiting_payout_account", True)]
    await register_payout_account(client, owner)
    await settle(app)
    payouts = (await client.get("/v1/payouts/me", headers=owner)).json()["items"]
    assert [(p["amount"], p["status"]) for p in payouts] == [("4250.00", "paid")]

    summary = (await client.get("/v1/apps/app-1/escrow", headers=approver_1)).json()["items"][0]
    assert summary == {"currency": "NGN", "deposited": "17000.00", "released": "4250.00", "refunded": "0.00",
                       "held": "12750.00", "frozen": "0.00", "available": "12750.00"}

    # a release at or above the threshold (10000) needs an admin among the approvals; a reject ends one
    await complete(client, owner, third["id"])
    big = (await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": third["id"]})).json()
    assert big["amount"] == "8500.00"
    await complete(client, owner, second["id"])
    rejected = (await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": second["id"]})).json()
    assert (await approve(client, approver_1, rejected["id"], "reject")).json()["status"] == "rejected"

    statement = (await client.get("/v1/apps/app-1/escrow/statement", headers=owner)).json()
    assert statement["opening_balance"] == "0.00"
    assert statement["closing_balance"] == "12750.00"
    assert [line["type"] for line in statement["items"]].count("release") == 3
    csv_text = (await client.get("/v1/apps/app-1/escrow/statement?format=csv", headers=owner)).text
    assert csv_text.splitlines()[1].split(",")[1] == "opening_balance"
    assert csv_text.splitlines()[-1].split(",")[5] == "12750.00"

    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity
