"""Small steps most HTTP tests share."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.gateway.client import PaystackClient
from app.main import create_app

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


def answer_label(response: httpx.Response) -> str:
    """An answer as a tally counts it: its status, and for a refusal the contract's error code."""
    if response.status_code < 400:
        return str(response.status_code)
    try:
        return f"{response.status_code} {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} without the error envelope"


async def another_instance(
    stack: contextlib.AsyncExitStack, settings: Settings, gateway: PaystackClient, base_url: str, **client: Any
) -> tuple[FastAPI, httpx.AsyncClient]:
    """One more instance of the service on `settings`' database, as `--workers N` runs it, talking to
    `gateway` (the first instance's, so that its sandbox knows every charge, transfer and refund). Started
    and stopped with `stack`."""
    app = create_app(settings, loopback=True)
    await stack.enter_async_context(LifespanManager(app, startup_timeout=30, shutdown_timeout=30))
    runtime = app.state.runtime
    own_gateway, runtime.gateway = runtime.gateway, gateway
    stack.callback(setattr, runtime, "gateway", own_gateway)  # its lifespan closes its own
    http = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url, **client))
    return app, http


def mock_paystack(base_url: str, **options: Any) -> respx.MockRouter:
    """respx in front of the Paystack client while the app under test (http://testserver) is called: the
    client sends with aiohttp under httpx's interface, so respx's httpx mocker (not its httpcore one) stands
    in for it, and lets the test client's own requests pass."""
    router = respx.mock(using="httpx", base_url=base_url, **options)
    router.route(host="testserver").pass_through()
    return router


def group_commits(histogram: str) -> tuple[float, float]:
    """(transactions a group commit made, jobs they carried), so far in this process, from its batch-size
    histogram (`escrow_batch_size`, `payments_credit_batch_size`, ...)."""
    return (REGISTRY.get_sample_value(f"{histogram}_count") or 0.0,
            REGISTRY.get_sample_value(f"{histogram}_sum") or 0.0)


async def blocked_on_a_lock(engine: AsyncEngine) -> None:
    """Return once some session of `engine`'s PostgreSQL database waits for a lock (bounded: 10 s)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock'")
    for _ in range(1000):
        async with engine.connect() as connection:
            if await connection.scalar(query):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("nothing waited for the lock")
