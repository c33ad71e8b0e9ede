"""List endpoints run a constant number of SQL statements whatever the page holds: one page of 50 rows
costs what a page of one costs (a query per row would show as 49 more)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from app.models import EscrowTransaction, Payment, ReleaseApproval, ReleaseItem, ReleaseRequest
from app.models.base import new_id

APP_ID = "app-counted"


def payment(n: int) -> list[Any]:
    return [Payment(id=new_id("pay"), reference=f"ref-counted-{n}", user_id="investor-1", app_id=APP_ID,
                    payment_type="investment", amount=100_00, currency="NGN", email="i@example.com")]


def deposit(n: int) -> list[Any]:
    return [EscrowTransaction(id=new_id("etx"), type="deposit", app_id=APP_ID, investor_id="investor-1",
                              amount=100_00, currency="NGN", status="held", shares=1)]


def release(n: int) -> list[Any]:
    release_id = new_id("rel")
    return [
        ReleaseRequest(id=release_id, app_id=APP_ID, milestone_id=f"ms-{n}", currency="NGN", amount=50_00,
                       release_percentage=5000, required_approvals=2, requested_by="owner-1"),
        ReleaseApproval(release_id=release_id, approver_id="approver-1", decision="approve"),
        ReleaseItem(release_id=release_id, deposit_id=f"etx-{n}", milestone_id=f"ms-{n}", amount=50_00, live=None),
    ]


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = app.state.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize(
    ("path", "rows"),
    [("/v1/payments", payment), ("/v1/escrow/transactions", deposit), ("/v1/escrow/releases", release)],
    ids=["payments", "escrow-transactions", "releases"],
)
async def test_a_page_of_fifty_costs_what_a_page_of_one_costs(
    app: FastAPI, client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], path: str,
    rows: Callable[[int], list[Any]],
) -> None:
    admin = auth("admin-1", admin=True)
    counts = {}
    made = 0
    for size in (1, 50):
        async with app.state.runtime.db.unit_of_work() as session:
            while made < size:
                for row in rows(made):  # one by one: no relationship tells the ORM a release precedes its items
                    session.add(row)
                    await session.flush()
                made += 1
        with statements(app) as seen:
            response = await client.get(path, params={"limit": 50}, headers=admin)
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == size
        counts[size] = len(seen)
    assert counts[50] == counts[1], counts
