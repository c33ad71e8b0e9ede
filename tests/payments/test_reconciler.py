"""Payments nobody told us about are verified by the reconciler; dead ones are abandoned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.payments.tasks import reconcile_pending
from tests.helpers import get_payment, invest, put_app


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"reconcile_pending_after_seconds": 0, "abandon_pending_after_seconds": 3600}


async def test_reconciler_credits_a_paid_charge_whose_webhook_never_came(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    paid = await invest(client, investor, shares=2)
    unpaid = await invest(client, investor, shares=1)
    app.state.sandbox.settle_charge(paid["reference"], "success", send_webhook=False)

    assert await reconcile_pending(app.state.runtime) == 2
    assert (await get_payment(client, investor, paid["reference"]))["status"] == "success"
    assert (await get_payment(client, investor, unpaid["reference"]))["status"] == "pending"
    assert len((await client.get("/v1/escrow/transactions", headers=investor)).json()["items"]) == 1


async def test_reconciler_marks_long_pending_payments_abandoned(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]], make_settings: Callable[..., Any]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    unpaid = await invest(client, investor, shares=1)
    app.state.runtime.settings = make_settings(abandon_pending_after_seconds=0)
    await reconcile_pending(app.state.runtime)
    assert (await get_payment(client, investor, unpaid["reference"]))["status"] == "abandoned"


async def test_reconciler_skips_payments_it_cannot_verify(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=1)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
    app.state.sandbox.faults.fail_next(10, status=500, path_contains="/transaction/verify")
    assert await reconcile_pending(app.state.runtime) == 0
    app.state.sandbox.faults.clear()
    assert (await get_payment(client, investor, payment["reference"]))["status"] == "pending"
    assert await reconcile_pending(app.state.runtime) == 1
    assert (await get_payment(client, investor, payment["reference"]))["status"] == "success"
