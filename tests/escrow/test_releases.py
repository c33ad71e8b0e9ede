"""Releases: quorum and admin approval, automatic execution, per-deposit releases, amounts, listing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from app.core.errors import InvalidState
from app.core.money import allocate, parse_percentage, percentage_of, to_major, to_minor
from app.core.security import Principal
from app.escrow.service import EscrowService
from app.ledger import accounts
from app.ledger.service import balance
from app.models import App, EscrowTransaction, Milestone, Payout, ReleaseApproval, ReleaseItem, ReleaseRequest
from app.models.base import new_id
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.helpers import APPROVERS, OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
THRESHOLD = "10000"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"escrow_release_threshold": THRESHOLD}


@pytest.fixture
def users(auth: Auth) -> dict[str, dict[str, str]]:
    return {"admin": auth("admin-1", admin=True), "admin2": auth("admin-2", admin=True), "owner": auth(OWNER),
            "approver1": auth(APPROVERS[0]), "approver2": auth(APPROVERS[1])}


async def deposit_ids(client: httpx.AsyncClient, admin: dict[str, str], app_id: str = "app-1") -> dict[str, str]:
    """investor id -> deposit id"""
    response = await client.get(f"/v1/escrow/transactions?type=deposit&app_id={app_id}", headers=admin)
    assert response.status_code == 200, response.text
    return {t["investor_id"]: t["id"] for t in response.json()["items"]}


async def invested(client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]],
                   shares: list[int], app_id: str = "app-1", **app_fields: Any) -> dict[str, str]:
    """An app and one paid investment per entry of `shares` (investor-0, investor-1, ...)."""
    await put_app(client, users["admin"], app_id, **app_fields)
    for i, count in enumerate(shares):
        await pay(client, app, await invest(client, auth(f"investor-{i}"), app_id=app_id, shares=count))
    return await deposit_ids(client, users["admin"], app_id)


async def completed_milestone(client: httpx.AsyncClient, owner: dict[str, str], percentage: str,
                              app_id: str = "app-1") -> str:
    created = await milestone(client, owner, percentage, app_id)
    await complete(client, owner, created["id"])
    return created["id"]


async def ask_release(client: httpx.AsyncClient, who: dict[str, str], milestone_id: str,
                      **extra: Any) -> httpx.Response:
    return await client.post("/v1/escrow/releases", headers=who, json={"milestone_id": milestone_id, **extra})


async def new_release(client: httpx.AsyncClient, who: dict[str, str], milestone_id: str, **extra: Any) -> dict:
    response = await ask_release(client, who, milestone_id, **extra)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending_approval"
    return response.json()


async def decided(client: httpx.AsyncClient, who: dict[str, str], release_id: str, decision: str = "approve") -> dict:
    response = await approve(client, who, release_id, decision)
    assert response.status_code == 200, response.text
    return response.json()


async def execute(client: httpx.AsyncClient, who: dict[str, str], release_id: str) -> httpx.Response:
    return await client.post(f"/v1/escrow/releases/{release_id}/execute", headers=who)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def get_json(client: httpx.AsyncClient, who: dict[str, str], path: str) -> Any:
    response = await client.get(path, headers=who)
    assert response.status_code == 200, response.text
    return response.json()


async def plant_release(app: FastAPI, like: dict, *, status: str, live: bool | None) -> str:
    """A copy of release `like` (same milestone, deposits and amounts) written straight to the
    database, past create_release's checks; `live` is its items' marker. One planted approved has its one
    required approval behind it, so that only the rule under test is broken."""
    async with app.state.runtime.db.unit_of_work() as session:
        planted = ReleaseRequest(
            id=new_id("rel"), app_id=like["app_id"], milestone_id=like["milestone_id"], transaction_id=None,
            currency=like["currency"], amount=to_minor(like["amount"], like["currency"]),
            release_percentage=parse_percentage(like["release_percentage"]), required_approvals=1,
            needs_admin=False, status=status, requested_by=OWNER,
        )
        session.add(planted)
        await session.flush()
        if status == "approved":
            session.add(ReleaseApproval(release_id=planted.id, approver_id="approver-1", decision="approve",
                                        is_admin=False))
        # into the table itself: the ORM writes the column's default (true) for None
        await session.execute(insert(ReleaseItem.__table__), [
            {"release_id": planted.id, "deposit_id": item["transaction_id"], "milestone_id": like["milestone_id"],
             "amount": to_minor(item["amount"], like["currency"]), "live": live}
            for item in like["items"]
        ])
    return planted.id


async def released_so_far(app: FastAPI) -> tuple[int, int, int]:
    """(released from deposits, escrow balance, payouts queued), in minor units and rows."""
    async with app.state.runtime.db.unit_of_work() as session:
        released = await session.scalar(select(func.sum(EscrowTransaction.released)).where(
            EscrowTransaction.type == "deposit"))
        payouts = await session.scalar(select(func.count()).select_from(Payout))
        return released or 0, await balance(session, accounts.escrow("app-1", "NGN")), payouts or 0


async def list_owner_as_approver(app: FastAPI, app_id: str = "app-1") -> None:
    """What a row written before owners were refused as approvers may hold."""
    async with app.state.runtime.db.unit_of_work() as session:
        row = await session.get(App, app_id)
        assert row is not None
        row.approvers = [OWNER, *row.approvers]


# ---- automatic releases ---------------------------------------------------------------------------


class TestAutomaticReleases:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"escrow_release_threshold": THRESHOLD, "enable_automatic_releases": True}

    async def test_the_quorum_releases_by_itself_below_the_threshold(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
    ) -> None:
        deposit = (await invested(client, app, auth, users, [20]))["investor-0"]  # 20000.00
        owner = users["owner"]
        release = await new_release(client, owner, await completed_milestone(client, owner, "25"))
        assert release["amount"] == "5000.00" and release["needs_admin_approval"] is False

        assert (await decided(client, users["approver1"], release["id"]))["status"] == "pending_approval"
        done = await decided(client, users["approver2"], release["id"])
        assert done["status"] == "released" and done["executed_at"] is not None
        again = await execute(client, users["admin"], release["id"])
        assert_error(again, 409, "INVALID_STATE")

        payouts = (await get_json(client, owner, "/v1/payouts/me"))["items"]
        assert [(p["amount"], p["reason"], p["status"]) for p in payouts] == [
            ("5000.00", "release", "awaiting_payout_account")]
        async with app.state.runtime.db.unit_of_work() as session:
            # the payout waits for the owner's account: the money sits in the owner's payable
            assert await balance(session, accounts.payable(OWNER, "NGN")) == 500_000
            assert await balance(session, accounts.escrow("app-1", "NGN")) == 1_500_000
        tx = await get_json(client, users["admin"], f"/v1/escrow/transactions/{deposit}")
        assert (tx["released"], tx["remaining"]) == ("5000.00", "15000.00")
        rows = (await get_json(client, users["admin"], "/v1/escrow/transactions?type=release"))["items"]
        assert [(r["amount"], r["milestone_id"], r["deposit_id"]) for r in rows] == [
            ("5000.00", release["milestone_id"], deposit)]
        milestones = (await get_json(client, owner, "/v1/apps/app-1/milestones"))["items"]
        assert [m["status"] for m in milestones] == ["released"]

        await register_payout_account(client, owner)
        await settle(app)
        assert [p["status"] for p in (await get_json(client, owner, "/v1/payouts/me"))["items"]] == ["paid"]

    async def test_at_the_threshold_it_waits_for_an_admin_and_an_execute(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
    ) -> None:
        await invested(client, app, auth, users, [20])
        owner = users["owner"]
        release = await new_release(client, owner, await completed_milestone(client, owner, "50"))
        assert release["amount"] == "10000.00" and release["needs_admin_approval"] is True  # exactly THRESHOLD

        for approver in ("approver1", "approver2"):
            assert (await decided(client, users[approver], release["id"]))["status"] == "pending_approval"
        assert (await decided(client, users["admin"], release["id"]))["status"] == "approved"  # not executed
        assert (await get_json(client, owner, "/v1/payouts/me"))["items"] == []
        executed = await execute(client, users["admin"], release["id"])
        assert executed.status_code == 200 and executed.json()["status"] == "released"
        assert [p["amount"] for p in (await get_json(client, owner, "/v1/payouts/me"))["items"]] == ["10000.00"]

    async def test_an_approval_stands_when_frozen_funds_stop_the_automatic_execution(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
    ) -> None:
        deposit = (await invested(client, app, auth, users, [10]))["investor-0"]
        owner = users["owner"]
        release = await new_release(client, owner, await completed_milestone(client, owner, "25"))
        dispute = await client.post("/v1/disputes", headers=auth("investor-0"),
                                    json={"transaction_id": deposit, "reason": "nothing delivered"})
        assert dispute.status_code == 201, dispute.text  # freezes all 10000.00

        await decided(client, users["approver1"], release["id"])
        approved = await decided(client, users["approver2"], release["id"])
        assert approved["status"] == "approved" and len(approved["approvals"]) == 2
        assert_error(await execute(client, users["admin"], release["id"]), 409, "FUNDS_FROZEN")
        assert (await get_json(client, owner, f"/v1/escrow/releases/{release['id']}"))["status"] == "approved"

        resolved = await client.post(f"/v1/disputes/{dispute.json()['id']}/resolve", headers=users["admin"],
                                     json={"outcome": "dismiss"})
        assert resolved.status_code == 200, resolved.text
        executed = await execute(client, users["admin"], release["id"])
        assert executed.status_code == 200 and executed.json()["status"] == "released"

    async def test_a_milestone_already_released_for_the_deposit_leaves_the_approval_standing(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
    ) -> None:
        await invested(client, app, auth, users, [10])
        owner = users["owner"]
        release = await new_release(client, owner, await completed_milestone(client, owner, "50"))
        await decided(client, users["approver1"], release["id"])
        assert (await decided(client, users["approver2"], release["id"]))["status"] == "released"
        planted = await plant_release(app, release, status="pending_approval", live=None)

        assert (await decided(client, users["approver1"], planted))["status"] == "approved"  # quorum 1: not executed
        assert await released_so_far(app) == (500_000, 500_000, 1)

    async def test_the_owner_cannot_trigger_an_execution(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
    ) -> None:
        await invested(client, app, auth, users, [20], approvers=[APPROVERS[0]], required_approvals=1)
        owner = users["owner"]
        release = await new_release(client, owner, await completed_milestone(client, owner, "25"))
        await list_owner_as_approver(app)

        for who in (owner, auth(OWNER, admin=True)):
            assert_error(await approve(client, who, release["id"]), 403, "UNAUTHORIZED")
        assert (await get_json(client, owner, f"/v1/escrow/releases/{release['id']}"))["status"] == "pending_approval"
        assert await released_so_far(app) == (0, 2_000_000, 0)
        assert (await decided(client, users["approver1"], release["id"]))["status"] == "released"

    async def test_an_approval_the_owner_gave_earlier_does_not_count(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
    ) -> None:
        await invested(client, app, auth, users, [20])  # two approvals needed
        owner = users["owner"]
        release = await new_release(client, owner, await completed_milestone(client, owner, "25"))
        await list_owner_as_approver(app)
        async with app.state.runtime.db.unit_of_work() as session:
            session.add(ReleaseApproval(release_id=release["id"], approver_id=OWNER, decision="approve",
                                        is_admin=True))

        assert (await decided(client, users["approver1"], release["id"]))["status"] == "pending_approval"
        assert await released_so_far(app) == (0, 2_000_000, 0)
        assert (await decided(client, users["approver2"], release["id"]))["status"] == "released"


async def test_without_automatic_releases_an_approved_release_waits_for_an_admin(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    assert app.state.settings.enable_automatic_releases is False
    deposit = (await invested(client, app, auth, users, [20]))["investor-0"]
    owner, admin = users["owner"], users["admin"]
    release = await new_release(client, owner, await completed_milestone(client, owner, "10"))
    await decided(client, users["approver1"], release["id"])
    assert (await decided(client, users["approver2"], release["id"]))["status"] == "approved"

    assert (await get_json(client, owner, f"/v1/escrow/releases/{release['id']}"))["status"] == "approved"
    assert (await get_json(client, owner, "/v1/payouts/me"))["items"] == []
    assert (await get_json(client, admin, f"/v1/escrow/transactions/{deposit}"))["released"] == "0.00"
    assert_error(await execute(client, owner, release["id"]), 403, "UNAUTHORIZED")

    executed = await execute(client, admin, release["id"])
    assert executed.status_code == 200, executed.text
    assert executed.json()["status"] == "released"
    assert (await get_json(client, admin, f"/v1/escrow/transactions/{deposit}"))["released"] == "2000.00"
    assert [p["amount"] for p in (await get_json(client, owner, "/v1/payouts/me"))["items"]] == ["2000.00"]
    assert_error(await execute(client, admin, release["id"]), 409, "INVALID_STATE")  # twice
    assert (await get_json(client, admin, "/v1/admin/integrity"))["ok"]


# ---- approvals ------------------------------------------------------------------------------------


async def test_at_or_above_the_threshold_an_admin_must_approve(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    await invested(client, app, auth, users, [30])  # 30000.00
    owner = users["owner"]
    at = await new_release(client, owner, await completed_milestone(client, owner, "40"))  # 12000.00
    assert at["needs_admin_approval"] is True and at["required_approvals"] == 2

    for approver in ("approver1", "approver2"):
        assert (await decided(client, users[approver], at["id"]))["status"] == "pending_approval"
    approved = await decided(client, users["admin"], at["id"])
    assert approved["status"] == "approved"
    assert [(a["approver_id"], a["is_admin"]) for a in approved["approvals"]] == [
        (APPROVERS[0], False), (APPROVERS[1], False), ("admin-1", True)]
    assert_error(await approve(client, users["admin"], at["id"]), 409, "INVALID_STATE")  # no longer pending


async def test_admin_approvals_count_toward_the_quorum(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    await invested(client, app, auth, users, [30])
    owner = users["owner"]
    big = await new_release(client, owner, await completed_milestone(client, owner, "50"))  # 15000.00
    small = await new_release(client, owner, await completed_milestone(client, owner, "10"))  # 3000.00
    assert (big["needs_admin_approval"], small["needs_admin_approval"]) == (True, False)

    # above the threshold: the admin's approval is both the admin's and one of the two
    assert (await decided(client, users["admin"], big["id"]))["status"] == "pending_approval"
    assert_error(await approve(client, users["admin"], big["id"]), 409, "INVALID_STATE")  # once per approver
    assert (await decided(client, users["approver2"], big["id"]))["status"] == "approved"
    # below it: two admins make the quorum without any approver
    assert (await decided(client, users["admin"], small["id"]))["status"] == "pending_approval"
    assert (await decided(client, users["admin2"], small["id"]))["status"] == "approved"
    # only approvers and admins decide
    third = await new_release(client, owner, await completed_milestone(client, owner, "10"))
    assert_error(await approve(client, owner, third["id"]), 403, "UNAUTHORIZED")
    assert_error(await approve(client, auth("investor-0"), third["id"]), 404, "NOT_FOUND")
    # any reject ends it
    assert (await decided(client, users["approver1"], third["id"], "reject"))["status"] == "rejected"
    assert_error(await approve(client, users["approver2"], third["id"]), 409, "INVALID_STATE")


# ---- what a release is made of --------------------------------------------------------------------


async def test_release_for_one_deposit_over_http_and_through_the_python_interface(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    deposits = await invested(client, app, auth, users, [4, 8])  # 4000.00 and 8000.00
    first, second = deposits["investor-0"], deposits["investor-1"]
    owner, admin = users["owner"], users["admin"]
    milestone_id = await completed_milestone(client, owner, "25")

    over_http = await new_release(client, owner, milestone_id, transaction_id=first)
    rt = app.state.runtime
    async with rt.db.unit_of_work() as session:
        deposit = await session.get(EscrowTransaction, second)
        ms = await session.get(Milestone, milestone_id)
        assert deposit is not None and ms is not None
        created = await EscrowService(session, rt).process_release(
            deposit, milestone=ms, release_percentage=Decimal("25.00"), requested_by=Principal(OWNER))
        created_id = created.id
    through_service = await get_json(client, owner, f"/v1/escrow/releases/{created_id}")

    for release, deposit_id, amount in ((over_http, first, "1000.00"), (through_service, second, "2000.00")):
        assert release["status"] == "pending_approval"
        assert (release["milestone_id"], release["transaction_id"], release["requested_by"]) == (
            milestone_id, deposit_id, OWNER)
        assert (release["amount"], release["currency"], release["release_percentage"]) == (amount, "NGN", "25.00")
        assert release["items"] == [{"transaction_id": deposit_id, "amount": amount}]
        assert release["required_approvals"] == 2 and release["approvals"] == []

    # a milestone releases once per deposit
    assert_error(await ask_release(client, owner, milestone_id, transaction_id=first), 409, "INVALID_STATE")
    assert_error(await ask_release(client, admin, milestone_id, transaction_id=second), 409, "INVALID_STATE")
    assert_error(await ask_release(client, owner, milestone_id), 409, "INVALID_STATE")  # nothing left for it
    async with rt.db.unit_of_work() as session:
        deposit = await session.get(EscrowTransaction, second)
        ms = await session.get(Milestone, milestone_id)
        assert deposit is not None and ms is not None
        with pytest.raises(InvalidState):
            await EscrowService(session, rt).process_release(
                deposit, milestone=ms, release_percentage=Decimal("25.00"), requested_by=Principal(OWNER))
    # a rejected release frees the deposit for that milestone again
    await decided(client, users["approver1"], over_http["id"], "reject")
    again = await new_release(client, owner, milestone_id, transaction_id=first)
    assert again["amount"] == "1000.00"

    # another app's deposit is not this milestone's
    elsewhere = (await invested(client, app, auth, users, [3], app_id="app-2"))["investor-0"]
    for unknown in (elsewhere, "esc-missing"):
        assert_error(await ask_release(client, owner, milestone_id, transaction_id=unknown), 404, "NOT_FOUND")


async def test_release_percentage_overrides_the_milestones(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    deposits = await invested(client, app, auth, users, [4, 8])
    owner = users["owner"]
    milestone_id = await completed_milestone(client, owner, "25")
    everyone = await new_release(client, owner, milestone_id, release_percentage="12.5")
    assert (everyone["release_percentage"], everyone["amount"]) == ("12.50", "1500.00")
    assert sorted((i["transaction_id"], i["amount"]) for i in everyone["items"]) == sorted(
        [(deposits["investor-0"], "500.00"), (deposits["investor-1"], "1000.00")])

    other = await completed_milestone(client, owner, "25")
    # at most what the app's milestones add up to (25 + 25): a milestone never releases more than that
    beyond = await ask_release(client, owner, other, transaction_id=deposits["investor-1"], release_percentage="50.01")
    assert_error(beyond, 422, "VALIDATION_ERROR")
    assert beyond.json()["error"]["details"]["milestones_percentage"] == "50.00"
    one = await new_release(client, owner, other, transaction_id=deposits["investor-1"], release_percentage="50")
    assert (one["release_percentage"], one["amount"]) == ("50.00", "4000.00")
    bad = await ask_release(client, owner, other, release_percentage="100.01")
    assert_error(bad, 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(("share_price", "shares", "percentage", "total", "parts"), [
    ("1000.00", [1, 1, 1], "33.33", "999.90", ["333.30", "333.30", "333.30"]),
    # 333.33 + 666.66 + 1333.32 = 2333.31; 33.33% of it is 777.69, the parts' floors sum to 777.67:
    # the two largest remainders (.857 and .714 of a kobo) get the two kobo left
    ("333.33", [1, 2, 4], "33.33", "777.69", ["111.10", "222.20", "444.39"]),
])
async def test_largest_remainder_amounts_sum_to_the_percentage_of_the_total(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]],
    share_price: str, shares: list[int], percentage: str, total: str, parts: list[str],
) -> None:
    deposits = await invested(client, app, auth, users, shares, share_price=share_price)
    owner = users["owner"]
    release = await new_release(client, owner, await completed_milestone(client, owner, percentage))

    by_deposit = {i["transaction_id"]: i["amount"] for i in release["items"]}
    assert [by_deposit[deposits[f"investor-{i}"]] for i in range(len(shares))] == parts
    minor = [int(Decimal(share_price) * 100) * n for n in shares]
    expected_total = percentage_of(sum(minor), int(Decimal(percentage) * 100))
    assert release["amount"] == total == to_major(expected_total, "NGN")
    assert sum(Decimal(p) for p in parts) == Decimal(total)
    assert [to_major(p, "NGN") for p in allocate(expected_total, minor)] == parts


# ---- execute and funds ----------------------------------------------------------------------------


async def test_execute_needs_an_approved_release(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    await invested(client, app, auth, users, [10])
    owner, admin = users["owner"], users["admin"]
    pending = await new_release(client, owner, await completed_milestone(client, owner, "10"))
    assert_error(await execute(client, admin, pending["id"]), 409, "INVALID_STATE")

    rejected = await new_release(client, owner, await completed_milestone(client, owner, "10"))
    await decided(client, users["approver1"], rejected["id"], "reject")
    assert_error(await execute(client, admin, rejected["id"]), 409, "INVALID_STATE")

    for approver in ("approver1", "approver2"):
        await decided(client, users[approver], pending["id"])
    first = await execute(client, admin, pending["id"])
    assert first.status_code == 200 and first.json()["status"] == "released"
    assert_error(await execute(client, admin, pending["id"]), 409, "INVALID_STATE")
    assert len((await get_json(client, admin, "/v1/escrow/transactions?type=release"))["items"]) == 1
    assert len((await get_json(client, owner, "/v1/payouts/me"))["items"]) == 1
    assert_error(await execute(client, admin, "rel-missing"), 404, "NOT_FOUND")


async def test_a_release_larger_than_what_the_deposit_holds_is_insufficient_funds(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    deposit = (await invested(client, app, auth, users, [10]))["investor-0"]  # 10000.00
    owner, admin = users["owner"], users["admin"]
    refund = await client.post(f"/v1/escrow/transactions/{deposit}/refunds", headers=admin,
                               json={"amount": "9000.00", "reason": "scaled down"})
    assert refund.status_code == 201, refund.text
    await settle(app)
    refunds = (await get_json(client, admin, "/v1/escrow/transactions?type=refund"))["items"]
    assert [(r["amount"], r["status"]) for r in refunds] == [("9000.00", "processed")]
    assert (await get_json(client, admin, f"/v1/escrow/transactions/{deposit}"))["remaining"] == "1000.00"

    await completed_milestone(client, owner, "90")  # the app's milestones promise 100%
    milestone_id = await completed_milestone(client, owner, "10")
    for extra in ({"transaction_id": deposit}, {}):
        too_much = await ask_release(client, owner, milestone_id, release_percentage="100", **extra)
        assert_error(too_much, 409, "INSUFFICIENT_FUNDS")
        assert too_much.json()["error"]["details"]["remaining"] == "1000.00"
    # what it still holds can go
    exact = await new_release(client, owner, milestone_id, transaction_id=deposit)
    assert exact["amount"] == "1000.00"
    assert (await get_json(client, admin, "/v1/escrow/releases"))["items"] == [exact]


# ---- reading releases -----------------------------------------------------------------------------


async def test_list_and_get_releases(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    owner, admin = users["owner"], users["admin"]
    other_owner, other_approver = auth("owner-2"), auth("approver-9")
    await invested(client, app, auth, users, [10])
    await put_app(client, admin, "app-2", owner_id="owner-2", approvers=["approver-9"], required_approvals=1)
    await pay(client, app, await invest(client, auth("investor-9"), app_id="app-2", shares=3))

    first = await new_release(client, owner, await completed_milestone(client, owner, "10"))
    second = await new_release(client, owner, await completed_milestone(client, owner, "10"))
    theirs = await new_release(client, other_owner, await completed_milestone(client, other_owner, "10", "app-2"))
    assert (await decided(client, other_approver, theirs["id"]))["status"] == "approved"

    async def listed(who: dict[str, str], query: str = "") -> list[str]:
        return [r["id"] for r in (await get_json(client, who, f"/v1/escrow/releases{query}"))["items"]]

    ours = [second["id"], first["id"]]  # newest first
    assert await listed(owner) == ours
    assert await listed(users["approver1"]) == ours
    assert await listed(other_owner) == await listed(other_approver) == [theirs["id"]]
    assert await listed(admin) == [theirs["id"], *ours]
    assert await listed(auth("investor-0")) == []
    assert await listed(admin, "?app_id=app-1") == ours
    assert await listed(admin, "?status=approved") == [theirs["id"]]
    assert await listed(admin, "?app_id=app-1&status=pending_approval") == ours
    assert await listed(owner, "?app_id=app-2") == []  # a filter never widens what one sees
    assert_error(await client.get("/v1/escrow/releases?status=bogus", headers=admin), 422, "VALIDATION_ERROR")

    page = await get_json(client, admin, "/v1/escrow/releases?app_id=app-1&limit=1")
    assert [r["id"] for r in page["items"]] == ours[:1] and page["next_cursor"]
    rest = await get_json(client, admin, f"/v1/escrow/releases?app_id=app-1&limit=1&cursor={page['next_cursor']}")
    assert [r["id"] for r in rest["items"]] == ours[1:]

    for who in (owner, users["approver1"], admin):
        assert await get_json(client, who, f"/v1/escrow/releases/{first['id']}") == first
    for who in (other_owner, other_approver, auth("investor-0")):
        assert_error(await client.get(f"/v1/escrow/releases/{first['id']}", headers=who), 404, "NOT_FOUND")
    assert_error(await client.get("/v1/escrow/releases/rel-missing", headers=admin), 404, "NOT_FOUND")


# ---- a milestone is released at most once per deposit ---------------------------------------------


async def test_the_database_refuses_a_second_live_item_for_a_milestone_and_deposit(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    await invested(client, app, auth, users, [10])
    owner = users["owner"]
    first = await new_release(client, owner, await completed_milestone(client, owner, "50"))

    with pytest.raises(IntegrityError, match=r"(?i)unique"):
        await plant_release(app, first, status="pending_approval", live=True)
    with pytest.raises(IntegrityError, match=r"(?i)check"):  # the marker is true or NULL, never false
        await plant_release(app, first, status="pending_approval", live=False)
    assert [r["id"] for r in (await get_json(client, owner, "/v1/escrow/releases"))["items"]] == [first["id"]]
    # a rejected release's items carry no marker: any number of them may sit beside the live one
    for _ in range(2):
        await plant_release(app, first, status="rejected", live=None)


async def test_rejecting_a_release_frees_its_deposits_for_the_milestone(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    deposits = await invested(client, app, auth, users, [10, 4])
    owner, admin = users["owner"], users["admin"]
    milestone_id = await completed_milestone(client, owner, "50")
    first = await new_release(client, owner, milestone_id)
    assert_error(await ask_release(client, owner, milestone_id), 409, "INVALID_STATE")

    await decided(client, users["approver1"], first["id"], "reject")
    again = await new_release(client, owner, milestone_id)
    assert sorted((i["transaction_id"], i["amount"]) for i in again["items"]) == sorted(
        [(deposits["investor-0"], "5000.00"), (deposits["investor-1"], "2000.00")])
    assert_error(await ask_release(client, owner, milestone_id), 409, "INVALID_STATE")  # live again
    await decided(client, users["approver1"], again["id"])
    await decided(client, users["approver2"], again["id"])
    executed = await execute(client, admin, again["id"])
    assert executed.status_code == 200, executed.text
    assert (await released_so_far(app))[0] == 700_000


async def test_execute_refuses_a_milestone_already_released_for_the_deposit(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    deposit = (await invested(client, app, auth, users, [10]))["investor-0"]
    owner, admin = users["owner"], users["admin"]
    release = await new_release(client, owner, await completed_milestone(client, owner, "50"))
    await decided(client, users["approver1"], release["id"])
    await decided(client, users["approver2"], release["id"])
    # a second approved release of the same milestone and deposit that got past create_release
    planted = await plant_release(app, release, status="approved", live=None)
    assert (await execute(client, admin, release["id"])).status_code == 200
    before = await released_so_far(app)
    assert before == (500_000, 500_000, 1)

    refused = await execute(client, admin, planted)
    assert_error(refused, 409, "INVALID_STATE")
    assert refused.json()["error"]["details"] == {"milestone_id": release["milestone_id"], "transaction_id": deposit}
    assert (await get_json(client, admin, f"/v1/escrow/releases/{planted}"))["status"] == "approved"
    assert await released_so_far(app) == before
    assert (await get_json(client, admin, "/v1/admin/integrity"))["ok"]


async def test_two_releases_of_one_milestone_and_deposit_executed_at_once_move_money_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    await invested(client, app, auth, users, [10, 4])
    owner, admin = users["owner"], users["admin"]
    release = await new_release(client, owner, await completed_milestone(client, owner, "50"))
    await decided(client, users["approver1"], release["id"])
    await decided(client, users["approver2"], release["id"])
    planted = await plant_release(app, release, status="approved", live=None)

    # gathered, both wait in the escrow queue together: one batch, checked one after the other
    responses = await asyncio.gather(execute(client, admin, release["id"]), execute(client, admin, planted))
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    assert next(r for r in responses if r.status_code == 409).json()["error"]["code"] == "INVALID_STATE"
    assert await released_so_far(app) == (700_000, 700_000, 1)
    assert (await get_json(client, admin, "/v1/admin/integrity"))["ok"]


async def test_milestones_never_release_more_of_a_deposit_than_their_percentages(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    deposit = (await invested(client, app, auth, users, [10]))["investor-0"]  # 10000.00
    owner, admin = users["owner"], users["admin"]
    thirty, twenty = [await completed_milestone(client, owner, p) for p in ("30", "20")]
    # the override lets one milestone take what both promise...
    everything = await new_release(client, owner, thirty, release_percentage="50")
    second = await new_release(client, owner, twenty)
    for release in (everything, second):
        await decided(client, users["approver1"], release["id"])
        await decided(client, users["approver2"], release["id"])
    assert (await execute(client, admin, everything["id"])).status_code == 200
    # ...and then nothing more leaves for milestones
    refused = await execute(client, admin, second["id"])
    assert_error(refused, 409, "INVALID_STATE")
    assert refused.json()["error"]["details"] == {
        "transaction_id": deposit, "milestones_percentage": "50.00", "released": "5000.00", "requested": "2000.00"}
    assert await released_so_far(app) == (500_000, 500_000, 1)
    # a dispute resolved for the owner is no milestone's release
    dispute = await client.post("/v1/disputes", headers=auth("investor-0"),
                                json={"transaction_id": deposit, "reason": "late", "amount": "1000.00"})
    assert dispute.status_code == 201, dispute.text
    resolved = await client.post(f"/v1/disputes/{dispute.json()['id']}/resolve", headers=admin,
                                 json={"outcome": "release"})
    assert resolved.status_code == 200, resolved.text
    assert (await released_so_far(app))[0] == 600_000


# ---- nobody approves money going to themselves ----------------------------------------------------


async def test_the_owner_never_approves_their_own_release(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, users: dict[str, dict[str, str]]
) -> None:
    await invested(client, app, auth, users, [10])
    owner = users["owner"]
    release = await new_release(client, owner, await completed_milestone(client, owner, "10"))
    await list_owner_as_approver(app)

    for who in (owner, auth(OWNER, admin=True)):
        for decision in ("approve", "reject"):
            assert_error(await approve(client, who, release["id"], decision), 403, "UNAUTHORIZED")
    assert (await get_json(client, owner, f"/v1/escrow/releases/{release['id']}"))["approvals"] == []
