"""Several payout accounts per person: the first of a currency is its default, payouts go to the default of
their currency, a new default takes the pending payouts with it, PUT /me sets the default, and an account
a payout on its way uses cannot be deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from app.models import Payout
from tests.distributions.test_distributions import buy_shares, distribute, pay_revenue
from tests.helpers import OWNER, put_app, settle
from tests.payouts.test_payouts import _release

Auth = Callable[..., dict[str, str]]
FIRST = {"currency": "NGN", "type": "nuban", "bank_code": "057", "account_number": "0123456789"}
SECOND = {"currency": "NGN", "type": "nuban", "bank_code": "058", "account_number": "0987654321"}


async def add(client: httpx.AsyncClient, who: dict[str, str], body: dict[str, Any], status: int = 201) -> dict:
    response = await client.post("/v1/payout-accounts", headers=who, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def mine(client: httpx.AsyncClient, who: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/v1/payout-accounts/me", headers=who)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def defaults(accounts: list[dict[str, Any]]) -> list[str]:
    return [a["id"] for a in accounts if a["is_default"]]


async def test_the_first_account_of_a_currency_is_its_default(client: httpx.AsyncClient, auth: Auth) -> None:
    owner = auth(OWNER)
    first = await add(client, owner, FIRST)
    second = await add(client, owner, SECOND)
    assert (first["is_default"], second["is_default"]) == (True, False)
    assert first["id"] != second["id"] and first["recipient_code"] != second["recipient_code"]
    again = await add(client, owner, FIRST, status=200)  # the same account again: the same row
    assert again["id"] == first["id"] and again["is_default"]
    listed = await mine(client, owner)
    assert [a["id"] for a in listed] == [first["id"], second["id"]]
    assert defaults(listed) == [first["id"]]
    assert {a["last4"] for a in listed} == {"6789", "4321"}

    made = await client.post(f"/v1/payout-accounts/{second['id']}/default", headers=owner)
    assert made.status_code == 200 and made.json()["is_default"], made.text
    assert defaults(await mine(client, owner)) == [second["id"]]
    # idempotent
    assert (await client.post(f"/v1/payout-accounts/{second['id']}/default", headers=owner)).status_code == 200
    assert defaults(await mine(client, owner)) == [second["id"]]


async def test_put_me_sets_the_default_of_its_currency(client: httpx.AsyncClient, auth: Auth) -> None:
    owner = auth(OWNER)
    first = await add(client, owner, FIRST)
    body = {"bank_code": "058", "account_number": "0987654321", "currency": "NGN"}
    put = await client.put("/v1/payout-accounts/me", headers=owner, json=body)
    assert put.status_code == 200, put.text
    assert put.json()["is_default"] and put.json()["type"] == "nuban"
    listed = await mine(client, owner)
    assert defaults(listed) == [put.json()["id"]] and len(listed) == 2
    # the same details again change nothing
    again = await client.put("/v1/payout-accounts/me", headers=owner, json=body)
    assert again.json()["id"] == put.json()["id"]
    assert defaults(await mine(client, owner)) == [put.json()["id"]]
    # and PUT with the first account's details makes it the default again
    back = await client.put("/v1/payout-accounts/me", headers=owner,
                            json={k: FIRST[k] for k in ("bank_code", "account_number", "currency")})
    assert back.json()["id"] == first["id"] and defaults(await mine(client, owner)) == [first["id"]]


async def test_a_new_default_takes_the_pending_payouts(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    """The payout is owed while the owner has two accounts; made default, the second one gets it."""
    payout = await _release(client, app, auth, account=False)
    assert payout["status"] == "awaiting_payout_account"
    owner = auth(OWNER)
    first = await add(client, owner, FIRST)
    second = await add(client, owner, SECOND)
    assert (await client.post(f"/v1/payout-accounts/{second['id']}/default", headers=owner)).status_code == 200
    await settle(app)
    [paid] = (await client.get("/v1/payouts/me", headers=owner)).json()["items"]
    assert paid["status"] == "paid"
    assert app.state.sandbox.transfers[paid["reference"]].recipient.code == second["recipient_code"]
    assert first["recipient_code"] != second["recipient_code"]


async def test_deleting_accounts(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    owner, other = auth(OWNER), auth("investor-9")
    first = await add(client, owner, FIRST)
    second = await add(client, owner, SECOND)
    theirs = await add(client, other, FIRST)

    # someone else's account is not found, and stays
    assert (await client.delete(f"/v1/payout-accounts/{theirs['id']}", headers=owner)).status_code == 404
    assert (await client.delete("/v1/payout-accounts/pa_missing", headers=owner)).status_code == 404
    assert [a["id"] for a in await mine(client, other)] == [theirs["id"]]

    # deleting the default makes the other account of the currency the default
    assert (await client.delete(f"/v1/payout-accounts/{first['id']}", headers=owner)).status_code == 204
    assert defaults(await mine(client, owner)) == [second["id"]]
    assert (await client.delete(f"/v1/payout-accounts/{first['id']}", headers=owner)).status_code == 404
    assert (await client.delete(f"/v1/payout-accounts/{second['id']}", headers=owner)).status_code == 204
    assert await mine(client, owner) == []


async def test_an_account_a_payout_on_its_way_uses_cannot_be_deleted(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)  # the owner's account registered with PUT /me
    [account] = await mine(client, auth(OWNER))
    async with app.state.runtime.db.unit_of_work() as session:  # on its way: claimed, not settled yet
        await session.execute(update(Payout).where(Payout.id == payout["id"])
                              .values(status="processing", recipient_code=account["recipient_code"]))
    refused = await client.delete(f"/v1/payout-accounts/{account['id']}", headers=auth(OWNER))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE", refused.text
    assert refused.json()["error"]["details"]["payout_id"] == payout["id"]
    assert [a["id"] for a in await mine(client, auth(OWNER))] == [account["id"]]

    async with app.state.runtime.db.unit_of_work() as session:  # settled: the account may go
        await session.execute(update(Payout).where(Payout.id == payout["id"]).values(status="paid"))
    assert (await client.delete(f"/v1/payout-accounts/{account['id']}", headers=auth(OWNER))).status_code == 204


async def test_deleting_the_only_default_leaves_pending_payouts_waiting(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth, account=False)
    account = await add(client, auth(OWNER), FIRST)
    async with app.state.runtime.db.unit_of_work() as session:
        assert (await session.scalar(select(Payout.recipient_code).where(Payout.id == payout["id"]))) == (
            account["recipient_code"])
    assert (await client.delete(f"/v1/payout-accounts/{account['id']}", headers=auth(OWNER))).status_code == 204
    await settle(app)
    [waiting] = (await client.get("/v1/payouts/me", headers=auth(OWNER))).json()["items"]
    assert (waiting["status"], waiting["awaiting_payout_account"]) == ("awaiting_payout_account", True)
    assert not app.state.sandbox.transfers


async def test_a_holder_with_several_accounts_is_allocated_once_and_paid_to_the_default(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin, owner, holder = auth("admin-1", admin=True), auth(OWNER), auth("investor-1")
    await put_app(client, admin)
    await buy_shares(client, app, auth, {"investor-1": 3, "investor-2": 2})
    await add(client, holder, FIRST)
    second = await add(client, holder, SECOND)
    assert (await client.post(f"/v1/payout-accounts/{second['id']}/default", headers=holder)).status_code == 200
    await pay_revenue(client, app, owner, "1000.00")
    created = await distribute(client, owner)
    assert created.status_code == 201, created.text
    assert created.json()["allocations"] == 2
    await settle(app)

    allocations = (await client.get(f"/v1/distributions/{created.json()['id']}/allocations",
                                    headers=admin)).json()["items"]
    assert {a["user_id"]: a["payout_status"] for a in allocations} == {
        "investor-1": "paid", "investor-2": "awaiting_payout_account"}
    [paid] = (await client.get("/v1/payouts/me", headers=holder)).json()["items"]
    assert app.state.sandbox.transfers[paid["reference"]].recipient.code == second["recipient_code"]
    mine_ = (await client.get("/v1/distributions/me", headers=auth("investor-2"))).json()["items"]
    assert [m["payout_status"] for m in mine_] == ["awaiting_payout_account"]
