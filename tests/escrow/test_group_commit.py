"""Concurrent releases and refunds share one transaction (group commit), and each still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.escrow import group_commit
from app.escrow.group_commit import Finish
from app.escrow.movements import RefundMade, RefundMoney, apply
from app.models import EscrowTransaction, Refund
from tests.escrow.test_full_path import approve, complete, milestone
from tests.helpers import OWNER, group_commits, invest, pay, put_app

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_enabled": False, "escrow_release_threshold": "100000000"}


async def deposits(app: FastAPI) -> list[str]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(select(EscrowTransaction.id).where(
            EscrowTransaction.type == "deposit").order_by(EscrowTransaction.id))).all())


async def funded(client: httpx.AsyncClient, app: FastAPI, auth: Auth, investors: int) -> list[str]:
    await put_app(client, auth("admin-1", admin=True), approvers=["approver-1"], required_approvals=1)
    for i in range(investors):
        await pay(client, app, await invest(client, auth(f"investor-{i}"), shares=10))  # 10000.00 each
    return await deposits(app)


async def test_concurrent_refunds_each_get_their_own_answer(client: httpx.AsyncClient, app: FastAPI,
                                                            auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    held = await funded(client, app, auth, investors=4)

    def refund(deposit_id: str, amount: str) -> Any:
        return client.post(f"/v1/escrow/transactions/{deposit_id}/refunds", headers=admin,
                           json={"amount": amount, "reason": "asked"})

    calls = [refund(d, "1000.00") for _ in range(2) for d in held]
    calls += [refund(held[0], "10000.01"), refund("esc_missing", "1.00")]
    responses = await asyncio.gather(*calls)

    assert [r.status_code for r in responses] == [201] * 8 + [409, 404], [r.text for r in responses]
    assert responses[8].json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert {r.json()["transaction_id"] for r in responses[:8]} == set(held)
    summary = (await client.get("/v1/apps/app-1/escrow", headers=admin)).json()["items"][0]
    assert (summary["refunded"], summary["held"]) == ("8000.00", "32000.00")
    integrity = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert integrity["ok"], integrity
    # one audit row per refund made, written with its batch, naming the request that asked for it
    trail = (await client.get("/v1/admin/audit-log?action=escrow.refunded&limit=100", headers=admin)).json()
    made = {r.json()["id"]: (r.json()["transaction_id"], r.headers["X-Request-ID"]) for r in responses[:8]}
    assert {e["changes"]["refund_id"]: (e["resource_id"], e["request_id"]) for e in trail["items"]} == made


async def test_one_release_executed_twice_at_once_moves_money_once(client: httpx.AsyncClient, app: FastAPI,
                                                                   auth: Auth) -> None:
    admin, owner = auth("admin-1", admin=True), auth(OWNER)
    await funded(client, app, auth, investors=2)
    ms = await milestone(client, owner, "25")
    await complete(client, owner, ms["id"])
    created = await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": ms["id"]})
    assert created.status_code == 201, created.text
    release_id = created.json()["id"]
    assert (await approve(client, auth("approver-1"), release_id)).json()["status"] == "approved"

    responses = await asyncio.gather(*(client.post(f"/v1/escrow/releases/{release_id}/execute", headers=admin)
                                       for _ in range(3)))

    assert sorted(r.status_code for r in responses) == [200, 409, 409], [r.text for r in responses]
    done = next(r.json() for r in responses if r.status_code == 200)
    assert (done["status"], done["amount"]) == ("released", "5000.00")
    summary = (await client.get("/v1/apps/app-1/escrow", headers=admin)).json()["items"][0]
    assert summary["released"] == "5000.00"
    payouts = (await client.get("/v1/payouts/me", headers=owner)).json()["items"]
    assert [p["amount"] for p in payouts] == ["5000.00"]


async def test_a_batch_that_fails_is_run_again_one_job_at_a_time(client: httpx.AsyncClient, app: FastAPI,
                                                                 auth: Auth) -> None:
    held = await funded(client, app, auth, investors=3)
    rt = app.state.runtime
    prepared: list[str] = []

    def job(deposit_id: str, *, breaks: bool = False) -> Any:
        async def prepare(session: AsyncSession) -> tuple[RefundMoney, Finish]:
            prepared.append(deposit_id)
            async def finish(made: object) -> str:
                if breaks:
                    raise RuntimeError("finish failed")
                assert isinstance(made, RefundMade)
                return made.refund_id

            return RefundMoney(deposit_id=deposit_id, amount=100_00, reason="test"), finish

        return group_commit.run(rt, prepare)

    committed_before, carried_before = group_commits("escrow_batch_size")
    # gathered together, the three are waiting before the queue's task first runs: one batch
    answers = await asyncio.gather(job(held[0]), job(held[1], breaks=True), job(held[2]),
                                   return_exceptions=True)

    assert isinstance(answers[1], RuntimeError)
    assert prepared == [held[0], held[1], held[2], held[0], held[1], held[2]]  # together, then each alone
    assert all(isinstance(a, str) and a.startswith("rfd_") for a in (answers[0], answers[2])), answers
    committed, carried = group_commits("escrow_batch_size")
    # the batch of three rolled back and each ran alone: two commits of one (the failed one never commits)
    assert (committed - committed_before, carried - carried_before) == (2, 2)
    async with app.state.runtime.db.unit_of_work() as session:
        refunds = dict((await session.execute(
            select(Refund.escrow_transaction_id, func.count()).group_by(Refund.escrow_transaction_id))).all())
        refunded = dict((await session.execute(
            select(EscrowTransaction.id, EscrowTransaction.refunded).where(EscrowTransaction.type == "deposit")
        )).all())
    assert len(refunds) == 2
    assert refunded == {held[0]: 100_00, held[1]: 0, held[2]: 100_00}


async def test_a_batch_writes_the_deposits_it_took_money_from_once_with_what_it_took(
        client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    first, second = await funded(client, app, auth, investors=2)
    rt = app.state.runtime
    updates: list[str] = []

    def count_deposit_updates(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ESCROW_TRANSACTIONS"):
            updates.append(statement)

    engine = rt.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count_deposit_updates)
    try:
        async with rt.db.unit_of_work() as session:
            outcomes = await apply(session, rt, [RefundMoney(first, 100_00, "asked"),
                                                 RefundMoney(second, 50_00, "asked"),
                                                 RefundMoney(first, 25_00, "asked")])
            assert all(isinstance(outcome, RefundMade) for outcome in outcomes), outcomes
            moved = [await session.get_one(EscrowTransaction, deposit_id) for deposit_id in (first, second)]
            assert not any(session.is_modified(deposit) for deposit in moved)  # nothing left to write again
    finally:
        event.remove(engine, "before_cursor_execute", count_deposit_updates)

    assert len(updates) == 1, updates
    async with rt.db.unit_of_work() as session:
        rows = {d.id: d for d in (await session.scalars(select(EscrowTransaction).where(
            EscrowTransaction.id.in_([first, second])))).all()}
    assert (rows[first].refunded, rows[first].status) == (125_00, "held")
    assert (rows[second].refunded, rows[second].status) == (50_00, "held")


async def test_a_savepoint_rolled_back_over_a_refund_leaves_the_deposit_as_the_database_has_it(
        client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    (deposit_id,) = await funded(client, app, auth, investors=1)
    rt = app.state.runtime

    class Undone(Exception):
        pass

    async with rt.db.unit_of_work() as session:
        with pytest.raises(Undone):
            async with session.begin_nested():
                (made,) = await apply(session, rt, [RefundMoney(deposit_id, 100_00, "asked")])
                assert isinstance(made, RefundMade)
                raise Undone
        # Read as the rest of the transaction would read it (loading what it must): not the refund undone.
        seen = await session.run_sync(lambda s: (s.get_one(EscrowTransaction, deposit_id).refunded,
                                                 s.get_one(EscrowTransaction, deposit_id).status))
        assert seen == (0, "held")
        (made,) = await apply(session, rt, [RefundMoney(deposit_id, 25_00, "asked")])
        assert isinstance(made, RefundMade)
    async with rt.db.unit_of_work() as session:
        deposit = await session.get_one(EscrowTransaction, deposit_id)
        refunds = await session.scalar(select(func.count()).select_from(Refund))
    assert (deposit.refunded, refunds) == (25_00, 1)
