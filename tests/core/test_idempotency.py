"""`Idempotency-Key` on POST /v1/payments: replay, conflict, concurrency, per-user scope, release on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.payments import service
from tests.escrow.test_full_path import complete, milestone
from tests.helpers import OWNER, put_app

Auth = Callable[..., dict[str, str]]


def investment(shares: int = 2, **fields: Any) -> dict[str, Any]:
    return {"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com",
            "currency": "NGN", "shares": shares, **fields}


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def my_payments(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/v1/payments", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_same_key_same_body_replays_the_first_response(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    first = await client.post("/v1/payments", json=investment(), headers=keyed(investor, "order-42"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers

    for _ in range(2):
        again = await client.post("/v1/payments", json=investment(), headers=keyed(investor, "order-42"))
        assert again.status_code == 201, again.text
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"

    payments = await my_payments(client, investor)
    assert [p["reference"] for p in payments] == [first.json()["reference"]]
    assert (await client.get("/v1/apps/app-1", headers=investor)).json()["shares_issued"] == 0


async def test_without_a_key_each_post_is_a_new_payment(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    first = await client.post("/v1/payments", json=investment(), headers=investor)
    second = await client.post("/v1/payments", json=investment(), headers=investor)
    assert first.status_code == second.status_code == 201
    assert first.json()["reference"] != second.json()["reference"]
    assert len(await my_payments(client, investor)) == 2


async def test_same_key_other_body_is_a_conflict(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    first = await client.post("/v1/payments", json=investment(shares=2), headers=keyed(investor, "k-1"))
    assert first.status_code == 201, first.text

    for body in (investment(shares=3), investment(shares=2, email="other@example.com"),
                 investment(shares=2, metadata={"note": "x"})):
        response = await client.post("/v1/payments", json=body, headers=keyed(investor, "k-1"))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert len(await my_payments(client, investor)) == 1


async def test_concurrent_duplicates_create_one_payment(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    # every initialize call takes effect, then answers after 0.5 s (under the client's 2 s timeout)
    app.state.sandbox.faults.timeout_next(6, path_contains="/transaction/initialize", delay=0.5)
    try:
        responses = await asyncio.gather(*(
            client.post("/v1/payments", json=investment(), headers=keyed(investor, "double-click"))
            for _ in range(6)
        ))
    finally:
        app.state.sandbox.faults.clear()

    created = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    assert len(created) == 1, [(r.status_code, r.text) for r in responses]
    reference = created[0].json()["reference"]
    for response in responses:
        if response.status_code == 201:
            assert response.json()["reference"] == reference
        else:
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert any(r.status_code == 409 for r in responses)  # the gateway was slow: someone saw it in progress
    assert [p["reference"] for p in await my_payments(client, investor)] == [reference]
    assert list(app.state.sandbox.transactions) == [reference]  # the gateway was asked once

    # once finished, a late duplicate is a replay
    late = await client.post("/v1/payments", json=investment(), headers=keyed(investor, "double-click"))
    assert late.status_code == 201 and late.json()["reference"] == reference


async def test_key_is_scoped_per_user(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    alice, bob = auth("alice"), auth("bob")
    mine = await client.post("/v1/payments", json=investment(), headers=keyed(alice, "shared-key"))
    theirs = await client.post("/v1/payments", json=investment(), headers=keyed(bob, "shared-key"))
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["reference"] != theirs.json()["reference"]
    assert (mine.json()["user_id"], theirs.json()["user_id"]) == ("alice", "bob")
    assert "Idempotent-Replayed" not in theirs.headers
    assert [p["reference"] for p in await my_payments(client, bob)] == [theirs.json()["reference"]]
    assert [p["reference"] for p in await my_payments(client, alice)] == [mine.json()["reference"]]
    # a different body from bob with the same key does not conflict with alice's
    conflict = await client.post("/v1/payments", json=investment(shares=3), headers=keyed(bob, "shared-key"))
    assert conflict.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


async def test_a_failed_request_releases_its_key(client: httpx.AsyncClient, auth: Auth) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin, total_shares=3)
    body = investment(shares=5)

    for _ in range(2):  # the failure is not stored and replayed: the request runs again
        failed = await client.post("/v1/payments", json=body, headers=keyed(investor, "retry-me"))
        assert failed.status_code == 409, failed.text
        assert failed.json()["error"]["code"] == "SHARES_UNAVAILABLE"
    assert await my_payments(client, investor) == []

    await put_app(client, admin, total_shares=10)  # the cause is fixed
    retried = await client.post("/v1/payments", json=body, headers=keyed(investor, "retry-me"))
    assert retried.status_code == 201, retried.text
    assert retried.json()["amount"] == "5000.00"
    assert [p["reference"] for p in await my_payments(client, investor)] == [retried.json()["reference"]]


async def test_a_gateway_failure_releases_its_key(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    app.state.sandbox.faults.fail_next(5, status=500, path_contains="/transaction/initialize")
    try:
        failed = await client.post("/v1/payments", json=investment(), headers=keyed(investor, "gw"))
    finally:
        app.state.sandbox.faults.clear()
    assert failed.status_code == 502, failed.text
    retried = await client.post("/v1/payments", json=investment(), headers=keyed(investor, "gw"))
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers


@pytest.mark.parametrize("key", ["k" * 256, "has space", "tab\tkey", "caf\u00e9", "", "key\n", "nul\x00"])
async def test_bad_keys_are_refused(client: httpx.AsyncClient, auth: Auth, key: str) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    headers: dict[str, str | bytes] = {**investor, "Idempotency-Key": key.encode()}  # bytes: UTF-8 for non-ASCII
    response = await client.post("/v1/payments", json=investment(), headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert await my_payments(client, investor) == []


async def test_longest_key_is_accepted(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    key = "k" * 255
    first = await client.post("/v1/payments", json=investment(), headers=keyed(investor, key))
    again = await client.post("/v1/payments", json=investment(), headers=keyed(investor, key))
    assert first.status_code == again.status_code == 201, first.text
    assert first.json()["reference"] == again.json()["reference"]


async def test_a_process_that_dies_after_the_payment_commits_leaves_its_answer_recorded(
    client: httpx.AsyncClient, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key's answer commits with the payment: a request that dies right after that commit (here, the
    very next line of the flow raises) is replayed on retry, never made into a second payment."""
    class DiesAfterCommit:
        def labels(self, **_: str) -> DiesAfterCommit:
            raise RuntimeError("the process died after the commit")

    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    with monkeypatch.context() as patched:
        patched.setattr(service.metrics, "PAYMENTS", DiesAfterCommit())
        with pytest.raises(RuntimeError, match="died after the commit"):
            await client.post("/v1/payments", json=investment(), headers=keyed(investor, "crash-1"))

    retried = await client.post("/v1/payments", json=investment(), headers=keyed(investor, "crash-1"))
    assert retried.status_code == 201, retried.text
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert [p["reference"] for p in await my_payments(client, investor)] == [retried.json()["reference"]]


async def test_a_refused_keyed_release_answers_its_refusal_and_frees_its_key(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    """Work done in the request's transaction (POST /v1/escrow/releases) that is refused rolls back before
    the key is released: on SQLite the request's write lock would otherwise keep the release from starting
    (a 500 that schemathesis found)."""
    await put_app(client, auth("admin-1", admin=True))
    owner = auth(OWNER)
    milestone_id = (await milestone(client, owner, "50"))["id"]
    body = {"milestone_id": milestone_id}

    refused = await client.post("/v1/escrow/releases", json=body, headers=keyed(owner, "release-1"))
    assert refused.status_code == 409, refused.text  # the milestone is not completed yet
    assert refused.json()["error"]["message"] == "The milestone must be completed first"

    await complete(client, owner, milestone_id)
    again = await client.post("/v1/escrow/releases", json=body, headers=keyed(owner, "release-1"))
    # the key was freed: the retry is judged afresh (no deposit to release from yet), not replayed or held
    assert again.status_code == 409, again.text
    assert again.json()["error"]["message"] == "No deposit of this app has funds left for this milestone"
