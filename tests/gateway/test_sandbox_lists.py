"""The sandbox's list endpoints (GET /transaction, GET /transfer): Paystack's filters and offset pages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.gateway.sandbox.records import iso
from tests.gateway import test_sandbox
from tests.gateway.test_sandbox import API, Env, assert_error, initialize, paid_charge, recipient, transfer_body

# The sandbox suite's fixtures, shared.
make_env, env = test_sandbox.make_env, test_sandbox.env


async def test_transactions_list_filters_by_status_and_creation_time_newest_first(env: Env) -> None:
    paid = [await paid_charge(env, reference=f"paid-{i}") for i in range(3)]
    await initialize(env, reference="left-at-checkout")
    old = env.sandbox.transactions["paid-0"]
    old.created_at -= timedelta(days=2)

    response = await env.client.get(f"{API}/transaction", params={"status": "success"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["reference"] for item in body["data"]] == ["paid-2", "paid-1", "paid-0"]
    assert body["meta"] == {"total": 3, "skipped": 0, "perPage": 50, "page": 1, "pageCount": 1}
    item = body["data"][0]
    assert (item["status"], item["amount"], item["requested_amount"], item["currency"]) == (
        "success", 500000, 500000, "NGN")
    assert item["created_at"] and item["paid_at"]

    since = iso(old.created_at + timedelta(days=1))
    recent = (await env.client.get(f"{API}/transaction", params={"from": since})).json()["data"]
    assert {item["reference"] for item in recent} == {"paid-1", "paid-2", "left-at-checkout"}
    until = (await env.client.get(f"{API}/transaction", params={"to": since})).json()["data"]
    assert [item["reference"] for item in until] == ["paid-0"]
    assert paid == ["paid-0", "paid-1", "paid-2"]


async def test_transactions_list_pages(env: Env) -> None:
    for i in range(5):
        await paid_charge(env, reference=f"paid-{i}")
    pages = [(await env.client.get(f"{API}/transaction", params={"perPage": 2, "page": page})).json()
             for page in (1, 2, 3, 4)]
    assert [[item["reference"] for item in page["data"]] for page in pages] == [
        ["paid-4", "paid-3"], ["paid-2", "paid-1"], ["paid-0"], []]
    assert [(page["meta"]["skipped"], page["meta"]["pageCount"], page["meta"]["total"]) for page in pages] == [
        (0, 3, 5), (2, 3, 5), (4, 3, 5), (6, 3, 5)]


async def test_transfers_list_shows_each_transfer_as_verify_does(env: Env) -> None:
    code = await recipient(env)
    for i in range(2):
        response = await env.client.post(f"{API}/transfer", json=transfer_body(code, f"payout-reference-{i:04d}"))
        assert response.status_code == 200, response.text
    await env.sandbox.wait_idle()

    body = (await env.client.get(f"{API}/transfer", params={"perPage": 1, "page": 2})).json()
    [item] = body["data"]
    verified = (await env.client.get(f"{API}/transfer/verify/payout-reference-0000")).json()["data"]
    assert item == verified
    assert (item["status"], item["amount"], item["reference"]) == ("success", 250000, "payout-reference-0000")
    assert body["meta"] == {"total": 2, "skipped": 1, "perPage": 1, "page": 2, "pageCount": 2}
    later = iso(env.sandbox.transfers["payout-reference-0001"].created_at + timedelta(seconds=1))
    assert (await env.client.get(f"{API}/transfer", params={"from": later})).json()["data"] == []


@pytest.mark.parametrize("params", [{"from": "yesterday"}, {"to": "2024-13-01"}, {"page": "0"}, {"perPage": "x"}])
async def test_list_filters_paystack_would_refuse_are_400(env: Env, params: dict[str, str]) -> None:
    for path in ("transaction", "transfer"):
        assert_error(await env.client.get(f"{API}/{path}", params=params), 400)
