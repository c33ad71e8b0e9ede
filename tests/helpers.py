"""Small steps most HTTP tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

OWNER = "owner-1"
APPROVERS = ["approver-1", "approver-2"]


async def settle(app: FastAPI, rounds: int = 5) -> None:
    """Let the sandbox deliver what it owes and the worker process what arrived."""
    for _ in range(rounds):
        await app.state.sandbox.wait_idle()
        await app.state.worker.drain()
    await app.state.sandbox.wait_idle()


async def put_app(
    client: httpx.AsyncClient, admin: dict[str, str], app_id: str = "app-1", **overrides: Any
) -> dict[str, Any]:
    body = {
        "name": "Farm Tools",
        "owner_id": OWNER,
        "currency": "NGN",
        "share_price": "1000.00",
        "total_shares": 1000,
        "approvers": APPROVERS,
        "required_approvals": 2,
        "lock_in_days": 0,
        "platform_fee_percentage": "2.50",
        **overrides,
    }
    response = await client.put(f"/v1/apps/{app_id}", json=body, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


async def invest(
    client: httpx.AsyncClient, headers: dict[str, str], app_id: str = "app-1", shares: int = 5, **extra: Any
) -> dict[str, Any]:
    body = {"payment_type": "investment", "app_id": app_id, "email": "investor@example.com",
            "currency": "NGN", "shares": shares, **extra}
    response = await client.post("/v1/payments", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def checkout(client: httpx.AsyncClient, payment: dict[str, Any], outcome: str) -> httpx.Response:
    return await client.post(payment["payment_url"], data={"outcome": outcome})


async def pay(client: httpx.AsyncClient, app: FastAPI, payment: dict[str, Any], outcome: str = "success") -> None:
    response = await checkout(client, payment, outcome)
    assert response.status_code in (200, 303), response.text
    await settle(app)


async def get_payment(client: httpx.AsyncClient, headers: dict[str, str], reference: str) -> dict[str, Any]:
    response = await client.get(f"/v1/payments/{reference}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


PAYSTACK_SAMPLES = Path(__file__).parent / "fixtures" / "paystack"


def paystack_sample(name: str) -> dict[str, Any]:
    """A real Paystack body from tests/fixtures/paystack (`name` without `.json`), as a fresh dict."""
    return json.loads((PAYSTACK_SAMPLES / f"{name}.json").read_text())
