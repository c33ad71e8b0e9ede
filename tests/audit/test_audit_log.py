"""The audit trail: each audited action leaves exactly one row (actor, roles, action, resource, request id,
changes) in the transaction of its change; refusals leave none; the admin route filters and pages; the rows
cannot be updated or deleted on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from app.core.security import Principal
from app.models import AuditEntry, audit
from app.models.base import utcnow
from tests.conftest import requires_postgres
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.helpers import APPROVERS, OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]
ADMIN = "admin-1"


async def entries(app: FastAPI) -> list[AuditEntry]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


class Trail:
    """What the trail held at the last look: `one_more()` asserts that exactly one row was added since."""

    def __init__(self, app: FastAPI) -> None:
        self.app, self.seen = app, 0

    async def start(self) -> Trail:
        self.seen = len(await entries(self.app))
        return self

    async def nothing_more(self) -> None:
        assert len(await entries(self.app)) == self.seen

    async def one_more(self, action: str, actor: str, roles: list[str], resource_type: str,
                       resource_id: str | None = None) -> AuditEntry:
        rows = await entries(self.app)
        added = rows[self.seen:]
        assert [(e.action, e.actor_id, e.actor_roles, e.resource_type) for e in added] == [
            (action, actor, roles, resource_type)], [(e.action, e.actor_id) for e in added]
        if resource_id is not None:
            assert added[0].resource_id == resource_id
        assert added[0].request_id  # the request being served, or the one that started the flow
        self.seen = len(rows)
        return added[0]


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


async def test_app_create_and_update_record_the_changed_fields_before_and_after(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    trail = await Trail(app).start()
    await put_app(client, auth(ADMIN, admin=True))
    created = await trail.one_more("app.created", ADMIN, ["admin"], "app", "app-1")
    assert created.changes["platform_fee_hundredths"] == {"before": None, "after": 250}
    assert created.changes["approvers"] == {"before": None, "after": APPROVERS}

    body = {"name": "Farm Tools", "owner_id": OWNER, "currency": "NGN", "share_price": "1000.00",
            "total_shares": 1000, "approvers": [APPROVERS[0]], "required_approvals": 1,
            "platform_fee_percentage": "5"}
    headers = {**auth("platform", service=True), "X-Request-ID": "req-update-1"}
    ok(await client.put("/v1/apps/app-1", json=body, headers=headers))
    updated = await trail.one_more("app.updated", "platform", ["service"], "app", "app-1")
    assert updated.request_id == "req-update-1"
    assert updated.changes == {
        "approvers": {"before": APPROVERS, "after": [APPROVERS[0]]},
        "required_approvals": {"before": 2, "after": 1},
        "platform_fee_hundredths": {"before": 250, "after": 500},
    }

    refused = await client.put("/v1/apps/app-1", json=body, headers=auth(OWNER))
    assert refused.status_code == 403
    await trail.nothing_more()


async def test_escrow_actions_each_leave_one_row_with_their_actor(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await pay(client, app, await invest(client, auth("investor-1"), shares=5))
    trail = await Trail(app).start()  # a payment is no admin's, owner's or approver's action

    first = await milestone(client, owner, "25")
    entry = await trail.one_more("milestone.created", OWNER, [], "milestone", first["id"])
    assert entry.changes["release_percentage"] == "25.00"
    await complete(client, owner, first["id"])
    await trail.nothing_more()

    release = ok(await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]}), 201)
    entry = await trail.one_more("release.requested", OWNER, [], "release", release["id"])
    assert (entry.changes["amount"], entry.changes["currency"]) == (125_000, "NGN")

    ok(await approve(client, auth(APPROVERS[0]), release["id"]))
    entry = await trail.one_more("release.approved", APPROVERS[0], [], "release", release["id"])
    assert entry.changes["status"] == "pending_approval"
    again = await approve(client, auth(APPROVERS[0]), release["id"])
    assert again.status_code == 409  # refused: rolled back with its would-be row
    await trail.nothing_more()
    ok(await approve(client, auth(APPROVERS[1]), release["id"]))
    entry = await trail.one_more("release.approved", APPROVERS[1], [], "release", release["id"])
    assert entry.changes["status"] == "approved"

    assert (await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=owner)).status_code == 403
    await trail.nothing_more()
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute",
                                 headers={**admin, "X-Request-ID": "req-execute-1"})
    ok(executed)
    entry = await trail.one_more("release.executed", ADMIN, ["admin"], "release", release["id"])
    assert (entry.request_id, entry.changes["status"]) == ("req-execute-1", "released")

    [deposit] = ok(await client.get("/v1/escrow/transactions?type=deposit", headers=admin))["items"]
    refund = ok(await client.post(f"/v1/escrow/transactions/{deposit['id']}/refunds", headers=admin,
                                  json={"amount": "100.00", "reason": "asked for"}), 201)
    entry = await trail.one_more("escrow.refunded", ADMIN, ["admin"], "escrow_transaction", deposit["id"])
    assert (entry.changes["amount"], entry.changes["reason"]) == (10_000, "asked for")
    assert entry.changes["refund_id"] == refund["id"]

    second = await milestone(client, owner, "25")
    await trail.one_more("milestone.created", OWNER, [], "milestone", second["id"])
    await complete(client, owner, second["id"])
    rejected = ok(await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": second["id"]}), 201)
    await trail.one_more("release.requested", OWNER, [], "release", rejected["id"])
    ok(await approve(client, admin, rejected["id"], "reject"))
    entry = await trail.one_more("release.rejected", ADMIN, ["admin"], "release", rejected["id"])
    assert entry.changes["status"] == "rejected"


async def test_dispute_resolution_is_recorded(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    admin = auth(ADMIN, admin=True)
    await put_app(client, admin)
    await pay(client, app, await invest(client, auth("investor-1"), shares=5))
    [deposit] = ok(await client.get("/v1/escrow/transactions?type=deposit", headers=admin))["items"]
    dispute = ok(await client.post("/v1/disputes", headers=auth("investor-1"),
                                   json={"transaction_id": deposit["id"], "reason": "late", "amount": "2000.00"}), 201)
    trail = await Trail(app).start()
    ok(await client.post(f"/v1/disputes/{dispute['id']}/resolve", headers=admin,
                         json={"outcome": "refund", "note": "looked into it"}))
    entry = await trail.one_more("dispute.resolved", ADMIN, ["admin"], "dispute", dispute["id"])
    assert (entry.changes["outcome"], entry.changes["amount"]) == ("refund", 200_000)
    again = await client.post(f"/v1/disputes/{dispute['id']}/resolve", headers=admin, json={"outcome": "dismiss"})
    assert again.status_code == 409
    await trail.nothing_more()


async def test_payout_retry_is_recorded(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await pay(client, app, await invest(client, auth("investor-1"), shares=5))
    await register_payout_account(client, owner)
    first = await milestone(client, owner, "25")
    await complete(client, owner, first["id"])
    release = ok(await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]}), 201)
    for approver in APPROVERS:
        ok(await approve(client, auth(approver), release["id"]))
    ok(await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin))
    app.state.sandbox.faults.transfer_outcome_next("failed")
    await settle(app)
    [payout] = ok(await client.get("/v1/payouts/me", headers=owner))["items"]
    assert payout["status"] == "failed"

    trail = await Trail(app).start()
    assert (await client.post(f"/v1/payouts/{payout['id']}/retry", headers=owner)).status_code == 403
    await trail.nothing_more()
    ok(await client.post(f"/v1/payouts/{payout['id']}/retry", headers=admin))
    entry = await trail.one_more("payout.retried", ADMIN, ["admin"], "payout", payout["id"])
    assert entry.changes["status"] == {"before": "failed", "after": "pending"}
    assert "recipient_code" not in entry.changes and "0123456789" not in str(entry.changes)



async def test_each_finalize_attempt_is_recorded_without_its_otp(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    from app.gateway.sandbox.state import TEST_TRANSFER_OTP
    from tests.payouts.test_payouts import _release

    app.state.sandbox.transfer_otp = True
    payout = await _release(client, app, auth)
    await settle(app)
    admin = auth(ADMIN, admin=True)
    trail = await Trail(app).start()
    wrong = await client.post(f"/v1/payouts/{payout['id']}/finalize", headers=admin, json={"otp": "000000"})
    assert wrong.status_code == 422, wrong.text
    refused = await trail.one_more("payout.finalize_attempted", ADMIN, ["admin"], "payout", payout["id"])
    ok(await client.post(f"/v1/payouts/{payout['id']}/finalize", headers=admin, json={"otp": TEST_TRANSFER_OTP}))
    taken = await trail.one_more("payout.finalize_attempted", ADMIN, ["admin"], "payout", payout["id"])
    for entry in (refused, taken):
        assert entry.changes["status"] == {"before": "awaiting_otp", "after": "processing"}
        assert "000000" not in str(entry.changes) and TEST_TRANSFER_OTP not in str(entry.changes)

async def test_distribution_is_recorded(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    from tests.distributions.test_distributions import buy_shares, distribute, pay_revenue

    admin, owner = auth(ADMIN, admin=True), auth(OWNER)
    await put_app(client, admin)
    await buy_shares(client, app, auth, {"investor-1": 3})
    await pay_revenue(client, app, owner, "1000.00", period="2025-05")
    trail = await Trail(app).start()
    dry = await distribute(client, owner, period="2025-05", dry_run=True)
    assert dry.status_code == 200
    await trail.nothing_more()  # a dry run changes nothing
    created = ok(await distribute(client, owner, period="2025-05"), 201)
    entry = await trail.one_more("distribution.created", OWNER, [], "distribution", created["id"])
    assert (entry.changes["amount"], entry.changes["period"], entry.changes["payouts"]) == (100_000, "2025-05", 1)
    assert (await distribute(client, owner, period="2025-05")).status_code == 409
    await trail.nothing_more()



async def test_webhook_endpoint_changes_are_recorded_without_the_secret(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    from tests.events.support import register

    admin = auth(ADMIN, admin=True)
    trail = await Trail(app).start()
    endpoint = await register(client, admin, ["payment.succeeded"])
    created = await trail.one_more("webhook_endpoint.created", ADMIN, ["admin"], "webhook_endpoint", endpoint["id"])
    assert created.changes["events"] == {"before": None, "after": ["payment.succeeded"]}

    url = f"/v1/admin/webhook-endpoints/{endpoint['id']}"
    rotated = ok(await client.patch(url, headers=admin, json={"disabled": True, "rotate_secret": True}))
    updated = await trail.one_more("webhook_endpoint.updated", ADMIN, ["admin"], "webhook_endpoint", endpoint["id"])
    assert updated.changes["disabled"] == {"before": False, "after": True}
    assert set(updated.changes) == {"disabled", "signing_key_rotated"}
    assert (await client.delete(url, headers=admin)).status_code == 204
    deleted = await trail.one_more("webhook_endpoint.deleted", ADMIN, ["admin"], "webhook_endpoint", endpoint["id"])
    assert deleted.changes["url"]["after"] is None
    for entry in (created, updated, deleted):
        assert endpoint["secret"] not in str(entry.changes) and rotated["secret"] not in str(entry.changes)

def test_changes_keep_nothing_sensitive() -> None:
    kept = audit.clean({
        "account_number": "0123456789", "authorization_code": "AUTH_abc", "otp": "123456",
        "nested": {"secret": "x", "note": "key sk_test_abcdef went in"}, "amount": 100, "tags": {"b", "a"},
    })
    assert kept == {"nested": {"note": "key [redacted] went in"}, "amount": 100, "tags": ["a", "b"]}


async def test_the_route_filters_by_actor_resource_action_and_time_and_pages(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin = auth(ADMIN, admin=True)
    for app_id in ("app-1", "app-2", "app-3"):
        await put_app(client, admin, app_id)
    await put_app(client, auth("platform", service=True), "app-2", name="Renamed")

    every = ok(await client.get("/v1/admin/audit-log", headers=admin))
    assert [(i["action"], i["resource_id"]) for i in every["items"]] == [
        ("app.updated", "app-2"), ("app.created", "app-3"), ("app.created", "app-2"), ("app.created", "app-1")]
    first = every["items"][0]
    assert set(first) == {"id", "at", "actor_id", "actor_roles", "action", "resource_type", "resource_id",
                          "request_id", "changes"}
    assert (first["actor_id"], first["actor_roles"]) == ("platform", ["service"])
    assert first["changes"] == {"name": {"before": "Farm Tools", "after": "Renamed"}}

    async def ids(query: str) -> list[str]:
        return [i["resource_id"] + ":" + i["action"] for i in
                ok(await client.get(f"/v1/admin/audit-log?{query}", headers=admin))["items"]]

    assert await ids("actor=platform") == ["app-2:app.updated"]
    assert await ids("resource=app:app-2") == ["app-2:app.updated", "app-2:app.created"]
    assert await ids("resource=app&action=app.created") == ["app-3:app.created", "app-2:app.created",
                                                            "app-1:app.created"]
    assert await ids("resource=release") == []
    now = utcnow()
    later = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    earlier = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert len(await ids(f"from={earlier}&to={later}")) == 4
    assert await ids(f"from={later}") == []
    assert await ids(f"to={earlier}") == []

    page = ok(await client.get("/v1/admin/audit-log?limit=3", headers=admin))
    rest = ok(await client.get(f"/v1/admin/audit-log?limit=3&cursor={page['next_cursor']}", headers=admin))
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in every["items"]]
    assert rest["next_cursor"] is None

    for bad in ("resource=App:x:y", "from=yesterday", "limit=0", "from=0001-01-01T00:00:00%2B05:00"):
        refused = await client.get(f"/v1/admin/audit-log?{bad}", headers=admin)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(("role", "status"), [
    ("anonymous", 401), ("investor", 403), ("owner", 403), ("approver", 403), ("service", 403), ("admin", 200),
])
async def test_only_admins_read_the_audit_log(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, role: str, status: int
) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    headers = {
        "anonymous": {}, "investor": auth("investor-1"), "owner": auth(OWNER), "approver": auth(APPROVERS[0]),
        "service": auth("platform", service=True), "admin": auth(ADMIN, admin=True),
    }[role]
    response = await client.get("/v1/admin/audit-log", headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert [i["action"] for i in response.json()["items"]] == ["app.created"]
    else:
        assert response.json()["error"]["code"] == {401: "UNAUTHENTICATED", 403: "UNAUTHORIZED"}[status]


async def test_an_entry_rolls_back_with_its_change(app: FastAPI) -> None:
    db = app.state.runtime.db
    with pytest.raises(RuntimeError):
        async with db.unit_of_work() as session:
            audit.record(session, Principal("admin-1", frozenset({"admin"})), "app.updated", "app", "app-1", {})
            await session.flush()
            raise RuntimeError("the change failed")
    assert await entries(app) == []


ROOT = Principal("admin-1", frozenset({"admin", "ops"}))


async def test_rows_recorded_together_are_written_as_the_block_ends_as_record_alone_writes_them(
    app: FastAPI,
) -> None:
    db = app.state.runtime.db
    async with db.unit_of_work() as session:
        alone = audit.record(session, ROOT, "app.updated", "app", "app-1", {"name": "a", "token": "secret"},
                             request="req-1")
        async with audit.recorded_together(session):
            together = [audit.record(session, ROOT, "escrow.refunded", "escrow_transaction", f"esc_{i}",
                                     {"amount": i, "token": "secret"}, request="req-2") for i in (1, 2)]
            written = select(func.count()).where(AuditEntry.id.in_(together))
            assert await session.scalar(written) == 0
        assert await session.scalar(written) == 2
        # written as rows, not as objects the unit of work would write again
        assert not [entry for entry in session if isinstance(entry, AuditEntry) and entry.id in together]
    rows = {row.id: row for row in await entries(app)}
    assert set(rows) == {alone, *together}
    seen = [(rows[i].actor_id, rows[i].actor_roles, rows[i].request_id, rows[i].action, rows[i].resource_id,
             rows[i].changes) for i in together]
    assert seen == [("admin-1", ["admin", "ops"], "req-2", "escrow.refunded", f"esc_{i}", {"amount": i})
                    for i in (1, 2)]
    assert rows[alone].changes == {"name": "a"} and rows[alone].actor_roles == ["admin", "ops"]
    assert rows[together[0]].at >= rows[alone].at and rows[together[0]].at.tzinfo is not None


async def test_a_row_recorded_together_in_a_savepoint_rolled_back_goes_with_it(app: FastAPI) -> None:
    db = app.state.runtime.db
    async with db.unit_of_work() as session, audit.recorded_together(session):
        before = audit.record(session, ROOT, "release.executed", "release", "rel_1")
        with pytest.raises(RuntimeError):
            async with session.begin_nested():
                audit.record(session, ROOT, "release.executed", "release", "rel_2")
                raise RuntimeError("the release in the savepoint failed")
        async with session.begin_nested():
            kept = audit.record(session, ROOT, "release.executed", "release", "rel_3")
        after = audit.record(session, ROOT, "release.executed", "release", "rel_4")
    assert [(e.id, e.resource_id) for e in await entries(app)] == [
        (before, "rel_1"), (kept, "rel_3"), (after, "rel_4")]


async def test_a_block_that_raises_writes_none_of_the_rows_recorded_in_it(app: FastAPI) -> None:
    db = app.state.runtime.db
    async with db.unit_of_work() as session:
        with pytest.raises(RuntimeError):
            async with audit.recorded_together(session):
                audit.record(session, ROOT, "escrow.refunded", "escrow_transaction", "esc_1")
                raise RuntimeError("the batch failed")
        after = audit.record(session, ROOT, "escrow.refunded", "escrow_transaction", "esc_2")
    assert [e.id for e in await entries(app)] == [after]


@requires_postgres
async def test_postgres_refuses_to_update_or_delete_an_entry(app: FastAPI) -> None:
    db = app.state.runtime.db
    async with db.unit_of_work() as session:
        entry_id = audit.record(session, Principal("admin-1", frozenset({"admin"})), "app.updated", "app",
                                "app-1", {"name": {"before": "a", "after": "b"}})
    for statement in (
        update(AuditEntry).where(AuditEntry.id == entry_id).values(actor_id="someone-else"),
        delete(AuditEntry).where(AuditEntry.id == entry_id),
        text("UPDATE audit_log SET changes = '{}'"),
        text("DELETE FROM audit_log"),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.unit_of_work() as session:
                await session.execute(statement)
    [kept] = await entries(app)
    assert (kept.id, kept.actor_id, kept.changes) == (entry_id, "admin-1", {"name": {"before": "a", "after": "b"}})
