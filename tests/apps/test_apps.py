from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.models import App
from tests.helpers import put_app


async def test_create_read_and_update_an_app(client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]) -> None:
    admin = auth("admin-1", admin=True)
    created = await put_app(client, admin, platform_fee_percentage="2.5")
    assert created["share_price"] == "1000.00"
    assert created["platform_fee_percentage"] == "2.50"
    assert created["shares_available"] == 1000

    service = auth("platform", service=True)
    updated = await put_app(client, service, name="Farm Tools Pro", total_shares=2000)
    assert updated["name"] == "Farm Tools Pro" and updated["shares_available"] == 2000

    seen = await client.get("/v1/apps/app-1", headers=auth("anyone"))
    assert seen.status_code == 200 and seen.json()["name"] == "Farm Tools Pro"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"required_approvals": 3}, "VALIDATION_ERROR"),
        ({"required_approvals": 0}, "VALIDATION_ERROR"),
        ({"approvers": ["a", "a"]}, "VALIDATION_ERROR"),
        ({"platform_fee_percentage": "100"}, "VALIDATION_ERROR"),
        ({"platform_fee_percentage": "2.555"}, "VALIDATION_ERROR"),
        ({"total_shares": 0}, "VALIDATION_ERROR"),
        ({"share_price": "10.001"}, "INVALID_AMOUNT"),
        ({"share_price": "0"}, "INVALID_AMOUNT"),
        ({"currency": "EUR"}, "CURRENCY_NOT_SUPPORTED"),
        ({"is_admin": True}, "VALIDATION_ERROR"),
    ],
)
async def test_bad_app_definitions_are_refused(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], overrides: dict, code: str
) -> None:
    body = {"name": "X", "owner_id": "o", "currency": "NGN", "share_price": "10.00", "total_shares": 10,
            "approvers": ["a", "b"], "required_approvals": 1, **overrides}
    response = await client.put("/v1/apps/app-x", json=body, headers=auth("admin-1", admin=True))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    missing = await client.get("/v1/apps/app-x", headers=auth("admin-1", admin=True))
    assert missing.status_code == 404


async def test_only_admins_or_the_platform_manage_apps(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]
) -> None:
    body = {"name": "X", "owner_id": "o", "currency": "NGN", "share_price": "10.00", "total_shares": 10}
    response = await client.put("/v1/apps/app-x", json=body, headers=auth("owner-1"))
    assert response.status_code == 403 and response.json()["error"]["code"] == "UNAUTHORIZED"
    assert (await client.get("/v1/apps/app-x")).status_code == 401


async def test_the_owner_cannot_be_an_approver(client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]) -> None:
    admin = auth("admin-1", admin=True)
    body = {"name": "X", "owner_id": "o", "currency": "NGN", "share_price": "10.00", "total_shares": 10,
            "approvers": ["a", "o"], "required_approvals": 1}
    response = await client.put("/v1/apps/app-x", json=body, headers=admin)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [f["loc"] for f in error["details"]["fields"]] == [["body", "approvers"]]
    assert (await client.get("/v1/apps/app-x", headers=admin)).status_code == 404

    await put_app(client, admin, "app-x", owner_id="o", approvers=["a"], required_approvals=1)
    to_owner = await client.put("/v1/apps/app-x", json={**body, "owner_id": "a", "approvers": ["a"]}, headers=admin)
    assert to_owner.status_code == 422, to_owner.text  # an update too
    assert (await client.get("/v1/apps/app-x", headers=admin)).json()["owner_id"] == "o"


async def test_concurrent_first_puts_of_an_app_all_succeed(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin = auth("admin-1", admin=True)

    def body(i: int) -> dict[str, Any]:
        return {"name": f"App {i}", "owner_id": f"owner-{i}", "currency": "NGN", "share_price": "10.00",
                "total_shares": 100 + i}

    responses = await asyncio.gather(*(client.put("/v1/apps/app-new", json=body(i), headers=admin)
                                       for i in range(20)))

    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses if r.status_code != 200]
    async with app.state.runtime.db.unit_of_work() as session:
        rows = (await session.scalars(select(App).where(App.id == "app-new"))).all()
    assert len(rows) == 1
    # one caller's fields, whole: the last writer's
    stored = (await client.get("/v1/apps/app-new", headers=admin)).json()
    writer = int(stored["name"].removeprefix("App "))
    assert (stored["owner_id"], stored["total_shares"]) == (f"owner-{writer}", 100 + writer)
    assert stored == max((r.json() for r in responses), key=lambda a: a["updated_at"])


async def test_the_app_list_is_paginated(client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]) -> None:
    admin = auth("admin-1", admin=True)
    for number in range(5):
        await put_app(client, admin, f"app-{number}")

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/apps", params=params, headers=admin)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == ["app-4", "app-3", "app-2", "app-1", "app-0"]
    first = (await client.get("/v1/apps", params={"limit": 1}, headers=admin)).json()["items"][0]
    assert first["shares_available"] == 1000 and first["owner_id"] == "owner-1"
    refused = await client.get("/v1/apps", params={"limit": 0}, headers=admin)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "VALIDATION_ERROR"
