"""Milestones past their due date while pending become overdue, each exactly once however many worker passes
(or workers at once) look: `overdue` and `overdue_at` in the answers, one transition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, timedelta

import httpx
from fastapi import FastAPI

from app.escrow.tasks import flag_overdue_milestones
from app.models.base import utcnow
from tests.conftest import requires_postgres
from tests.escrow.test_full_path import complete
from tests.helpers import OWNER, put_app

Auth = Callable[..., dict[str, str]]


async def add(client: httpx.AsyncClient, owner: dict[str, str], title: str, due: date | None) -> dict:
    body = {"title": title, "release_percentage": "10", "due_date": due.isoformat() if due else None}
    response = await client.post("/v1/apps/app-1/milestones", headers=owner, json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["overdue"], response.json()["overdue_at"]) == (False, None)
    return response.json()


async def shown(client: httpx.AsyncClient, owner: dict[str, str]) -> dict[str, tuple[bool, bool]]:
    """title -> (overdue, overdue_at set)"""
    listed = (await client.get("/v1/apps/app-1/milestones", headers=owner)).json()["items"]
    return {m["title"]: (m["overdue"], m["overdue_at"] is not None) for m in listed}


async def milestones_due(client: httpx.AsyncClient, auth: Auth) -> dict[str, str]:
    await put_app(client, auth("admin-1", admin=True))
    owner = auth(OWNER)
    today = utcnow().date()
    made = {
        "late": await add(client, owner, "late", today - timedelta(days=1)),
        "done late": await add(client, owner, "done late", today - timedelta(days=3)),
        "due today": await add(client, owner, "due today", today),
        "due later": await add(client, owner, "due later", today + timedelta(days=5)),
        "no date": await add(client, owner, "no date", None),
    }
    await complete(client, owner, made["done late"]["id"])
    return {title: m["id"] for title, m in made.items()}


async def test_a_pending_milestone_past_its_due_date_becomes_overdue_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await milestones_due(client, auth)
    rt = app.state.runtime
    passes = [await flag_overdue_milestones(rt) for _ in range(4)]
    await app.state.worker.drain()  # the worker's own passes
    assert passes == [1, 0, 0, 0]
    assert await shown(client, auth(OWNER)) == {
        "late": (True, True), "done late": (False, False), "due today": (False, False),
        "due later": (False, False), "no date": (False, False),
    }
    late = next(m for m in (await client.get("/v1/apps/app-1/milestones", headers=auth(OWNER))).json()["items"]
                if m["title"] == "late")
    await flag_overdue_milestones(rt)
    again = next(m for m in (await client.get("/v1/apps/app-1/milestones", headers=auth(OWNER))).json()["items"]
                 if m["title"] == "late")
    assert again["overdue_at"] == late["overdue_at"]  # set once, never moved

    # one `milestone.overdue` event for the one transition, about the app's owner
    mine = (await client.get("/v1/events/me?type=milestone.overdue", headers=auth(OWNER))).json()["items"]
    assert [(e["type"], e["data"]["id"], e["data"]["overdue"]) for e in mine] == [
        ("milestone.overdue", late["id"], True)]
    assert (await client.get("/v1/events/me?type=milestone.overdue", headers=auth("investor-1"))).json()[
        "items"] == []

    await complete(client, auth(OWNER), late["id"])  # completed late: no longer overdue, the time stays
    assert (await shown(client, auth(OWNER)))["late"] == (False, True)
    assert await flag_overdue_milestones(rt) == 0


async def test_worker_passes_flag_overdue_milestones(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await milestones_due(client, auth)
    await app.state.worker.drain()  # the first pass runs the once-a-minute reconcilers
    assert (await shown(client, auth(OWNER)))["late"] == (True, True)


@requires_postgres
async def test_workers_at_once_flag_each_milestone_once(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await milestones_due(client, auth)
    rt = app.state.runtime
    flagged = await asyncio.gather(*(flag_overdue_milestones(rt) for _ in range(8)))
    assert sum(flagged) == 1
    assert (await shown(client, auth(OWNER)))["late"] == (True, True)
