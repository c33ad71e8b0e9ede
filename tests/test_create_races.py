"""Every route that creates or changes something, raced: the same request sent ten times at once on
PostgreSQL leaves what one request would have left, and the others get the contract's answers (a replay,
IDEMPOTENCY_IN_PROGRESS, or the domain's refusal), never a 5xx and never a duplicate.

`RACED` is the table of routes and what ten identical requests get. `test_every_write_route_is_raced`
reads the app's OpenAPI: a POST, PUT, PATCH or DELETE route that is neither raced here nor exempted in
`EXEMPT` (with the reason) fails it, and so does a route that honours `Idempotency-Key` without a race
that shares one key. It runs on every engine; the races need PostgreSQL's row locks (SQLite serialises
writers, so a race there proves nothing) and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.apidocs import resolved
from app.core.config import Settings
from app.events.record import emit
from app.ledger import accounts
from app.ledger.service import balance
from app.models import (
    App,
    Distribution,
    LedgerAccount,
    PayoutAccount,
    Refund,
    RevenueDeclaration,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.models.base import utcnow
from app.web.idempotency import REPLAY_HEADER
from tests.conftest import BASE_URL, requires_postgres
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.helpers import (
    APPROVERS,
    OWNER,
    another_instance,
    answer_label,
    blocked_on_a_lock,
    checkout,
    get_payment,
    invest,
    pay,
    put_app,
    settle,
)
from tests.payments.test_concurrency import charge_success, post_signed

Auth = Callable[..., dict[str, str]]
Clients = list[httpx.AsyncClient]
Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]

TIMES = 10
ADMIN, INVESTOR, SELLER, BUYER = "admin-1", "investor-1", "seller-1", "buyer-1"


# Route -> (honours Idempotency-Key, what ten identical requests get, the tests of this module that race it).
RACED: dict[str, tuple[bool, str, list[str]]] = {
    "PUT /v1/apps/{app_id}": (
        False, "10 x 200, one app", ["test_put_app_first_time"]),
    "PUT /v1/payout-accounts/me": (
        False, "10 x 200, one account; racing a route that owes the payee: the payout goes to it",
        ["test_register_payout_account", "test_payout_account_registered_while_a_payout_is_written"]),
    "POST /v1/payout-accounts": (
        False, "the same account: 1 x 201, 9 x 200, one row, the default; ten accounts of a new currency: one default",
        ["test_add_payout_account", "test_first_accounts_of_a_currency_at_once"]),
    "POST /v1/payout-accounts/{account_id}/default": (
        False, "10 x 200 over two accounts, one default", ["test_make_payout_account_default"]),
    "DELETE /v1/payout-accounts/{account_id}": (
        False, "1 x 204, 9 x 404 NOT_FOUND; deleting the default while others are made default: one default",
        ["test_delete_payout_account", "test_delete_the_default_while_changing_it"]),
    "POST /v1/payments": (
        True, "key: 1 x 201 + replays; none: 10 intents, never more shares issued than exist",
        ["test_create_payment", "test_intents_for_the_same_shares_paid_at_once"]),
    "POST /v1/payments/{reference}/verify": (
        False, "10 x 200 success, credited once", ["test_verify_payment"]),
    "POST /v1/webhooks/paystack": (
        False, "10 x 200, stored and credited once", ["test_same_signed_webhook"]),
    "POST /v1/apps/{app_id}/milestones": (
        False, "60% each: 1 x 201, 9 x 422 VALIDATION_ERROR", ["test_create_milestone"]),
    "POST /v1/milestones/{milestone_id}/complete": (
        False, "1 x 200, 9 x 409 INVALID_STATE", ["test_complete_milestone"]),
    "POST /v1/escrow/releases": (
        True, "key: 1 x 201 + replays; none: 1 x 201, 9 x 409 INVALID_STATE", ["test_create_release"]),
    "POST /v1/escrow/releases/{release_id}/approvals": (
        False, "one approver: 1 x 200, 9 x 409 INVALID_STATE", ["test_approve_release"]),
    "POST /v1/escrow/releases/{release_id}/execute": (
        False, "1 x 200, 9 x 409 INVALID_STATE, money moved once", ["test_execute_release"]),
    "POST /v1/escrow/transactions/{transaction_id}/refunds": (
        True, "key: 1 x 201 + replays; none: 1 x 201, 9 x 409 INSUFFICIENT_FUNDS", ["test_refund_deposit"]),
    "POST /v1/disputes": (
        False, "whole deposit: 1 x 201, 9 x 409 INSUFFICIENT_FUNDS", ["test_open_dispute"]),
    "POST /v1/disputes/{dispute_id}/resolve": (
        False, "1 x 200, 9 x 409 INVALID_STATE, refunded once", ["test_resolve_dispute"]),
    "POST /v1/share-transfers": (
        True, "key: 1 x 201 + replays; none: 1 x 201, 9 x 409 SHARES_UNAVAILABLE", ["test_offer_shares"]),
    "POST /v1/share-transfers/{transfer_id}/cancel": (
        False, "1 x 200, 9 x 409 INVALID_STATE", ["test_cancel_share_transfer"]),
    "POST /v1/apps/{app_id}/distributions": (
        True, "key: 1 x 201 + replays; none: 1 x 201, 9 x 409 INVALID_STATE", ["test_distribute_revenue"]),
    "POST /v1/apps/{app_id}/revenue-declarations": (
        True, "key: 1 x 201 + replays; none: 10 x 201, each replacing the one before: one live declaration",
        ["test_declare_revenue", "test_declaration_replaced_while_its_payment_is_applied"]),
    "POST /v1/payouts/{payout_id}/retry": (
        False, "1 x 200, 9 x 409 INVALID_STATE, paid once", ["test_retry_payout"]),
    "POST /v1/payouts/{payout_id}/finalize": (
        False, "1 x 200, 9 x 409 INVALID_STATE, one finalize reaches the gateway, paid once",
        ["test_finalize_payout"]),
    "POST /v1/admin/webhook-endpoints": (
        False, "10 x 201: ten endpoints, each with its own id and secret", ["test_create_webhook_endpoint"]),
    "PATCH /v1/admin/webhook-endpoints/{endpoint_id}": (
        False, "10 x 200 rotating: the secret stored is one of those answered", ["test_rotate_webhook_secret"]),
    "DELETE /v1/admin/webhook-endpoints/{endpoint_id}": (
        False, "1 x 204, 9 x 404 NOT_FOUND, its deliveries gone", ["test_delete_webhook_endpoint"]),
    "POST /v1/admin/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry": (
        False, "10 x 200, one delivery, pending again", ["test_retry_webhook_delivery"]),
}

# Write routes with no race here, each with the reason. (The sandbox's Paystack routes are outside
# the OpenAPI schema, and outside this inventory: they stand in for Paystack, not for the service.)
EXEMPT: dict[str, str] = {
    "POST /v1/payouts/{payout_id}/resend-otp": "changes nothing here: each call asks Paystack to send the OTP "
    "again, which repeats harmlessly (one more message)",
}

WRITE_METHODS = ("post", "put", "patch", "delete")


def _write_routes(schema: dict[str, Any]) -> dict[str, bool]:
    """Every write route the schema declares -> whether it takes an Idempotency-Key header."""
    routes = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in WRITE_METHODS:
                routes[f"{method.upper()} {path}"] = any(
                    p["in"] == "header" and p["name"].lower() == "idempotency-key"
                    for p in (resolved(schema, p) for p in operation.get("parameters", [])))
    return routes


def _races_with_one_key(test: Callable[..., Any]) -> bool:
    """Whether the test is run with one shared Idempotency-Key (parametrized by KEYS)."""
    return any(mark.name == "parametrize" and mark.args[0] == "with_key" and True in mark.args[1]
               for mark in getattr(test, "pytestmark", []))


def test_every_write_route_is_raced(app: FastAPI) -> None:
    served = _write_routes(app.openapi())
    unraced = sorted(set(served) - set(RACED) - set(EXEMPT))
    assert not unraced, f"write routes with no race test (add them to RACED, or to EXEMPT with why): {unraced}"
    assert not sorted((set(RACED) | set(EXEMPT)) - set(served)), "RACED or EXEMPT name routes the app no longer has"
    assert not set(RACED) & set(EXEMPT)
    for route, (keyed, _, names) in RACED.items():
        assert keyed == served[route], f"{route}: Idempotency-Key honoured is {served[route]}, the table says {keyed}"
        tests = [globals().get(name) for name in names]
        assert tests and all(callable(test) for test in tests), f"{route}: {names} not all found"
        assert not keyed or any(_races_with_one_key(test) for test in tests), f"{route}: no race with one key"


# ---- the service as several processes: one client per instance ----------------------------------------

INSTANCES = 3


@pytest.fixture
async def clients(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> AsyncIterator[Clients]:
    """`client` and clients of INSTANCES - 1 more instances of the service on the same database, as
    `--workers N` runs it: what one instance serialises in memory (its group commits), the others do
    not see, so only the database's rules keep the requests apart. The instances share the first one's
    gateway (its sandbox), so a charge or refund made through one is known to all."""
    async with contextlib.AsyncExitStack() as stack:
        others = [await another_instance(stack, settings, app.state.runtime.gateway, BASE_URL)
                  for _ in range(INSTANCES - 1)]
        yield [client, *(http for _, http in others)]


# ---- how ten answers are judged --------------------------------------------------------------------------


async def ten_at_once(clients: Clients, request: Request) -> list[httpx.Response]:
    """The request TIMES times at once, spread over the service's instances."""
    return list(await asyncio.gather(*(request(clients[i % len(clients)]) for i in range(TIMES))))


def tally(responses: list[httpx.Response]) -> dict[str, int]:
    """Answers by status and error code: {"201": 1, "409 INSUFFICIENT_FUNDS": 9}."""
    return dict(Counter(answer_label(r) for r in responses))


def one_made_the_rest_replayed(responses: list[httpx.Response], status: int = 201) -> dict[str, Any]:
    """One shared Idempotency-Key: exactly one request did the work; each other one replayed its answer
    or was told the first is still in progress. Returns the answer made."""
    made = [r for r in responses if r.status_code == status and REPLAY_HEADER not in r.headers]
    assert len(made) == 1, tally(responses)
    for response in responses:
        if response is made[0]:
            continue
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS", response.text
        else:
            assert response.status_code == status, response.text
            assert response.headers[REPLAY_HEADER] == "true"
            assert response.json() == made[0].json()
    return made[0].json()


async def replayed_once_more(client: httpx.AsyncClient, request: Request, made: dict[str, Any],
                             status: int = 201) -> None:
    """After the race the key holds the answer made: the same request again replays it."""
    again = await request(client)
    assert (again.status_code, again.headers.get(REPLAY_HEADER)) == (status, "true"), again.text
    assert again.json() == made


def keyed(headers: dict[str, str], key: str = "race-key-1") -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


# A route that honours Idempotency-Key is raced twice: all ten requests with one key, and without one.
KEYS = pytest.mark.parametrize("with_key", [True, False], ids=["one_key", "no_key"])


# ---- state built through the API ------------------------------------------------------------------------


async def integrity_ok(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get("/v1/admin/integrity", headers=auth(ADMIN, admin=True))
    assert response.status_code == 200, response.text
    assert response.json()["ok"], response.json()


async def listed(client: httpx.AsyncClient, headers: dict[str, str], path: str, **params: Any) -> list[dict]:
    response = await client.get(path, headers=headers, params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def funded_app(client: httpx.AsyncClient, app: FastAPI, auth: Auth, shares: int = 5,
                     investor: str = INVESTOR, **app_fields: Any) -> dict[str, Any]:
    """app-1, and `investor`'s paid investment in it; returns the deposit."""
    admin = auth(ADMIN, admin=True)
    await put_app(client, admin, **app_fields)
    await pay(client, app, await invest(client, auth(investor), shares=shares))
    [deposit] = await listed(client, admin, "/v1/escrow/transactions", type="deposit", investor_id=investor)
    return deposit


async def completed_milestone(client: httpx.AsyncClient, auth: Auth, percentage: str = "25") -> dict[str, Any]:
    created = await milestone(client, auth(OWNER), percentage)
    await complete(client, auth(OWNER), created["id"])
    return created


async def asked_release(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    ms = await completed_milestone(client, auth)
    response = await client.post("/v1/escrow/releases", headers=auth(OWNER), json={"milestone_id": ms["id"]})
    assert response.status_code == 201, response.text
    return response.json()


async def approved_release(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    release = await asked_release(client, auth)
    for approver in APPROVERS:
        decided = await approve(client, auth(approver), release["id"])
        assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    return decided.json()


async def shares_held(client: httpx.AsyncClient, who: dict[str, str]) -> dict[str, tuple[int, int]]:
    """app_id -> (shares, reserved_shares)"""
    return {h["app_id"]: (h["shares"], h["reserved_shares"]) for h in await listed(client, who, "/v1/holdings/me")}


async def app_view(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    response = await client.get("/v1/apps/app-1", headers=auth(ADMIN, admin=True))
    assert response.status_code == 200, response.text
    return response.json()


async def escrow_summary(client: httpx.AsyncClient, auth: Auth) -> dict[str, str]:
    [summary] = (await client.get("/v1/apps/app-1/escrow", headers=auth(ADMIN, admin=True))).json()["items"]
    return summary


async def offered_shares(client: httpx.AsyncClient, app: FastAPI, auth: Auth, shares: int = 10) -> dict[str, Any]:
    """seller-1 holds `shares` of app-1 and offers them all to buyer-1; returns the transfer."""
    await funded_app(client, app, auth, shares=shares, investor=SELLER)
    response = await client.post("/v1/share-transfers", headers=auth(SELLER), json=offer_body(shares))
    assert response.status_code == 201, response.text
    return response.json()


def offer_body(shares: int) -> dict[str, Any]:
    return {"app_id": "app-1", "buyer_id": BUYER, "shares": shares, "price_per_share": "1200.00"}


REVENUE_PERIOD = "2026-01"


def revenue_body() -> dict[str, Any]:
    return {"payment_type": "revenue", "app_id": "app-1", "email": "owner@example.com", "currency": "NGN",
            "amount": "10000.00", "period": REVENUE_PERIOD}


# ---- the races ------------------------------------------------------------------------------------------


@requires_postgres
async def test_put_app_first_time(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    admin = auth(ADMIN, admin=True)
    body = {"name": "Farm Tools", "owner_id": OWNER, "currency": "NGN", "share_price": "1000.00",
            "total_shares": 1000, "approvers": APPROVERS, "required_approvals": 2, "lock_in_days": 0}

    responses = await ten_at_once(clients, lambda http: http.put("/v1/apps/app-1", headers=admin, json=body))

    assert tally(responses) == {"200": TIMES}, [r.text for r in responses]
    ignore = {"created_at", "updated_at"}
    assert len({tuple(sorted((k, str(v)) for k, v in r.json().items() if k not in ignore)) for r in responses}) == 1
    async with app.state.runtime.db.unit_of_work() as session:
        assert await session.scalar(select(func.count()).select_from(App)) == 1
    assert (await app_view(client, auth))["shares_available"] == 1000


@requires_postgres
async def test_register_payout_account(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    investor = auth(INVESTOR)
    body = {"bank_code": "057", "account_number": "0123456789", "currency": "NGN"}

    responses = await ten_at_once(clients, lambda http: http.put("/v1/payout-accounts/me", headers=investor, json=body))

    assert tally(responses) == {"200": TIMES}, [r.text for r in responses]
    assert len({r.json()["recipient_code"] for r in responses}) == 1
    assert len(app.state.sandbox.recipients) == 1  # Paystack gives the same account's recipient again
    async with app.state.runtime.db.unit_of_work() as session:
        assert await session.scalar(select(func.count()).select_from(PayoutAccount)) == 1
    [shown] = (await client.get("/v1/payout-accounts/me", headers=investor)).json()["items"]
    assert shown["recipient_code"] == responses[0].json()["recipient_code"] and shown["is_default"]


def _account(number: str, bank_code: str = "057") -> dict[str, Any]:
    return {"currency": "NGN", "type": "nuban", "bank_code": bank_code, "account_number": number}


async def _accounts(app: FastAPI, user_id: str) -> list[PayoutAccount]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(select(PayoutAccount).where(PayoutAccount.user_id == user_id))).all())


@requires_postgres
async def test_add_payout_account(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    investor = auth(INVESTOR)
    responses = await ten_at_once(clients, lambda http: http.post("/v1/payout-accounts", headers=investor,
                                                                  json=_account("0123456789")))
    assert tally(responses) == {"201": 1, "200": TIMES - 1}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    [row] = await _accounts(app, INVESTOR)
    assert row.is_default


@requires_postgres
async def test_first_accounts_of_a_currency_at_once(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth
) -> None:
    """Ten different accounts of a currency the person has none in, at once: exactly one is the default."""
    investor = auth(INVESTOR)
    responses = list(await asyncio.gather(*(
        clients[i % len(clients)].post("/v1/payout-accounts", headers=investor, json=_account(f"012345678{i}"))
        for i in range(TIMES))))
    assert tally(responses) == {"201": TIMES}, [r.text for r in responses]
    assert [r.json()["is_default"] for r in responses].count(True) == 1
    rows = await _accounts(app, INVESTOR)
    assert len(rows) == TIMES and [row.is_default for row in rows].count(True) == 1


@requires_postgres
async def test_make_payout_account_default(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth
) -> None:
    """Ten changes of the default at once, between two accounts: each answered, one default in the end."""
    investor = auth(INVESTOR)
    ids = [(await client.post("/v1/payout-accounts", headers=investor, json=_account(number))).json()["id"]
           for number in ("0123456789", "0987654321")]
    responses = list(await asyncio.gather(*(
        clients[i % len(clients)].post(f"/v1/payout-accounts/{ids[i % 2]}/default", headers=investor)
        for i in range(TIMES))))
    assert tally(responses) == {"200": TIMES}, [r.text for r in responses]
    rows = await _accounts(app, INVESTOR)
    assert [row.is_default for row in rows].count(True) == 1


@requires_postgres
async def test_delete_payout_account(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    investor = auth(INVESTOR)
    created = (await client.post("/v1/payout-accounts", headers=investor, json=_account("0123456789"))).json()
    responses = await ten_at_once(clients, lambda http: http.delete(f"/v1/payout-accounts/{created['id']}",
                                                                    headers=investor))
    assert tally(responses) == {"204": 1, "404 NOT_FOUND": TIMES - 1}, [r.text for r in responses]
    assert await _accounts(app, INVESTOR) == []


@requires_postgres
async def test_delete_the_default_while_changing_it(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth
) -> None:
    """The default deleted (its successor promoted) while two other accounts are made default, at once: every
    request answered, no 5xx, one default left."""
    investor = auth(INVESTOR)
    ids = [(await client.post("/v1/payout-accounts", headers=investor, json=_account(number))).json()["id"]
           for number in ("0123456789", "0987654321", "0555555555")]
    requests = [lambda http: http.delete(f"/v1/payout-accounts/{ids[0]}", headers=investor)] + [
        (lambda http, target=ids[1 + i % 2]: http.post(f"/v1/payout-accounts/{target}/default", headers=investor))
        for i in range(TIMES - 1)]
    responses = list(await asyncio.gather(*(request(clients[i % len(clients)])
                                            for i, request in enumerate(requests))))
    assert tally(responses) == {"204": 1, "200": TIMES - 1}, [r.text for r in responses]
    rows = await _accounts(app, INVESTOR)
    assert len(rows) == 2 and [row.is_default for row in rows].count(True) == 1


def _payment_body(payment_type: str, transfer_id: str | None) -> dict[str, Any]:
    if payment_type == "investment":
        return {"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com",
                "currency": "NGN", "shares": 5}
    if payment_type == "share_transfer":
        return {"payment_type": "share_transfer", "app_id": "app-1", "email": "buyer@example.com",
                "currency": "NGN", "share_transfer_id": transfer_id}
    return revenue_body()


async def _payer(client: httpx.AsyncClient, app: FastAPI, auth: Auth, payment_type: str) -> tuple[dict, dict]:
    """Who pays for `payment_type`, and the body: an investor, the buyer of an offer, the app's owner."""
    if payment_type == "share_transfer":
        transfer = await offered_shares(client, app, auth, shares=4)
        return auth(BUYER), _payment_body(payment_type, transfer["id"])
    await put_app(client, auth(ADMIN, admin=True))
    return auth(OWNER if payment_type == "revenue" else INVESTOR), _payment_body(payment_type, None)


PAYMENT_TYPES = ["investment", "share_transfer", "revenue"]


@requires_postgres
@pytest.mark.parametrize("payment_type", PAYMENT_TYPES)
@KEYS
async def test_create_payment(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth, payment_type: str, with_key: bool
) -> None:
    """One key: one intent, the gateway asked once. No key: ten intents is what ten requests ask for, and
    none of them issues or reserves anything."""
    payer, body = await _payer(client, app, auth, payment_type)
    known, before = set(app.state.sandbox.transactions), await app_view(client, auth)
    headers = keyed(payer) if with_key else payer

    def create(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post("/v1/payments", headers=headers, json=body)

    responses = await ten_at_once(clients, create)

    if with_key:
        made = [one_made_the_rest_replayed(responses)]
        await replayed_once_more(client, create, made[0])
    else:
        assert tally(responses) == {"201": TIMES}, [r.text for r in responses]
        made = [r.json() for r in responses]
    references = sorted(p["reference"] for p in made)
    assert sorted(p["reference"] for p in await listed(client, payer, "/v1/payments", payment_type=payment_type)) == (
        references)
    assert sorted(set(app.state.sandbox.transactions) - known) == references  # one gateway call each
    assert (await app_view(client, auth))["shares_issued"] == before["shares_issued"]
    await integrity_ok(client, auth)


@requires_postgres
@pytest.mark.parametrize("payment_type", ["investment", "share_transfer"])
async def test_intents_for_the_same_shares_paid_at_once(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth, payment_type: str
) -> None:
    """Ten intents for the same shares (all of an app's, or one offer's), all paid at once: one payment
    gets them, nine are refunded, and no more shares exist or move than there are."""
    if payment_type == "investment":
        await put_app(client, auth(ADMIN, admin=True), total_shares=10)
        payer, body = auth(INVESTOR), {**_payment_body("investment", None), "shares": 10}
    else:
        payer, body = await _payer(client, app, auth, payment_type)  # buyer-1 pays for seller-1's 4 shares
    bought = 10 if payment_type == "investment" else 4
    created = await ten_at_once(clients, lambda http: http.post("/v1/payments", headers=payer, json=body))
    assert tally(created) == {"201": TIMES}, [r.text for r in created]

    paid = await asyncio.gather(*(checkout(client, r.json(), "success") for r in created))
    assert {r.status_code for r in paid} <= {200, 303}
    await settle(app)

    statuses = Counter([(await get_payment(client, payer, r.json()["reference"]))["status"] for r in created])
    assert statuses == {"success": 1, "refunded": TIMES - 1}
    assert await shares_held(client, payer) == {"app-1": (bought, 0)}
    assert (await app_view(client, auth))["shares_issued"] == bought  # a sale moves shares, issues none
    # one deposit: the winning investment's, or (a sale's money goes to the seller) the seller's own
    assert len(await listed(client, auth(ADMIN, admin=True), "/v1/escrow/transactions", type="deposit")) == 1
    assert sorted(r.status for r in app.state.sandbox.refunds.values()) == ["processed"] * (TIMES - 1)
    if payment_type == "share_transfer":
        assert await shares_held(client, auth(SELLER)) == {}
        assert [p["reason"] for p in await listed(client, auth(SELLER), "/v1/payouts/me")] == ["share_sale"]
    await integrity_ok(client, auth)


@requires_postgres
async def test_verify_payment(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    investor = auth(INVESTOR)
    payment = await invest(client, investor, shares=5)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)

    responses = await ten_at_once(
        clients, lambda http: http.post(f"/v1/payments/{payment['reference']}/verify", headers=investor))

    assert tally(responses) == {"200": TIMES}, [r.text for r in responses]
    assert {r.json()["status"] for r in responses} == {"success"}
    await settle(app)
    assert len(await listed(client, auth(ADMIN, admin=True), "/v1/escrow/transactions", type="deposit")) == 1
    assert await shares_held(client, investor) == {"app-1": (5, 0)}
    assert (await escrow_summary(client, auth))["held"] == "5000.00"
    await integrity_ok(client, auth)


@requires_postgres
async def test_same_signed_webhook(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    investor = auth(INVESTOR)
    payment = await invest(client, investor, shares=5)
    app.state.sandbox.settle_charge(payment["reference"], "success", send_webhook=False)
    body = charge_success(app, payment["reference"])

    responses = await ten_at_once(clients, lambda http: post_signed(http, app, body))

    assert tally(responses) == {"200": TIMES}, [r.text for r in responses]
    assert all(r.json() == {"status": "ok"} for r in responses)
    await settle(app)
    async with app.state.runtime.db.unit_of_work() as session:
        events = (await session.scalars(select(WebhookEvent.status))).all()
    assert events == ["processed"]
    assert len(await listed(client, auth(ADMIN, admin=True), "/v1/escrow/transactions", type="deposit")) == 1
    assert await shares_held(client, investor) == {"app-1": (5, 0)}
    await integrity_ok(client, auth)


@requires_postgres
async def test_create_milestone(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    owner = auth(OWNER)

    responses = await ten_at_once(clients, lambda http: http.post(
        "/v1/apps/app-1/milestones", headers=owner, json={"title": "beta", "release_percentage": "60"}))

    assert tally(responses) == {"201": 1, "422 VALIDATION_ERROR": TIMES - 1}, [r.text for r in responses]
    assert [m["release_percentage"] for m in await listed(client, owner, "/v1/apps/app-1/milestones")] == ["60.00"]


@requires_postgres
async def test_complete_milestone(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth(ADMIN, admin=True))
    owner = auth(OWNER)
    created = await milestone(client, owner, "25")

    responses = await ten_at_once(clients, lambda http: http.post(
        f"/v1/milestones/{created['id']}/complete", headers=owner, json={"evidence": "shipped"}))

    assert tally(responses) == {"200": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    [stored] = await listed(client, owner, "/v1/apps/app-1/milestones")
    assert (stored["status"], stored["evidence"]) == ("completed", "shipped")


@requires_postgres
@KEYS
async def test_create_release(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth, with_key: bool
) -> None:
    await funded_app(client, app, auth, shares=5)
    ms = await completed_milestone(client, auth)
    owner = keyed(auth(OWNER)) if with_key else auth(OWNER)

    def create(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post("/v1/escrow/releases", headers=owner, json={"milestone_id": ms["id"]})

    responses = await ten_at_once(clients, create)

    if with_key:
        made = one_made_the_rest_replayed(responses)
        await replayed_once_more(client, create, made)
    else:
        assert tally(responses) == {"201": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    [release] = await listed(client, auth(ADMIN, admin=True), "/v1/escrow/releases")
    assert (release["amount"], len(release["items"])) == ("1250.00", 1)


@requires_postgres
async def test_approve_release(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await funded_app(client, app, auth)
    release = await asked_release(client, auth)

    responses = await ten_at_once(clients, lambda http: approve(http, auth(APPROVERS[0]), release["id"]))

    assert tally(responses) == {"200": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    stored = (await client.get(f"/v1/escrow/releases/{release['id']}", headers=auth(ADMIN, admin=True))).json()
    assert [a["approver_id"] for a in stored["approvals"]] == [APPROVERS[0]]
    assert stored["status"] == "pending_approval"  # one of the two approvals it needs


@requires_postgres
async def test_execute_release(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await funded_app(client, app, auth)
    release = await approved_release(client, auth)
    admin = auth(ADMIN, admin=True)

    responses = await ten_at_once(
        clients, lambda http: http.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin))

    assert tally(responses) == {"200": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    summary = await escrow_summary(client, auth)
    assert (summary["released"], summary["held"]) == ("1250.00", "3750.00")
    assert len(await listed(client, admin, "/v1/escrow/transactions", type="release")) == 1
    assert [(p["amount"], p["reason"]) for p in await listed(client, auth(OWNER), "/v1/payouts/me")] == [
        ("1250.00", "release")]
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.payable(OWNER, "NGN")) == 125_000
    await integrity_ok(client, auth)


@requires_postgres
@KEYS
async def test_refund_deposit(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth, with_key: bool
) -> None:
    deposit = await funded_app(client, app, auth, shares=5)
    admin = keyed(auth(ADMIN, admin=True)) if with_key else auth(ADMIN, admin=True)

    def refund(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post(f"/v1/escrow/transactions/{deposit['id']}/refunds", headers=admin,
                           json={"reason": "changed their mind"})

    responses = await ten_at_once(clients, refund)

    if with_key:
        made = one_made_the_rest_replayed(responses)
        await replayed_once_more(client, refund, made)
    else:
        assert tally(responses) == {"201": 1, "409 INSUFFICIENT_FUNDS": TIMES - 1}, [r.text for r in responses]
    await settle(app)
    [record] = await listed(client, admin, "/v1/escrow/transactions", type="refund")
    assert (record["amount"], record["status"]) == ("5000.00", "processed")
    assert [(r.amount, r.status) for r in app.state.sandbox.refunds.values()] == [(500_000, "processed")]
    assert await shares_held(client, auth(INVESTOR)) == {}
    assert (await app_view(client, auth))["shares_issued"] == 0
    await integrity_ok(client, auth)


@requires_postgres
async def test_open_dispute(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    deposit = await funded_app(client, app, auth, shares=5)
    investor = auth(INVESTOR)

    responses = await ten_at_once(clients, lambda http: http.post(
        "/v1/disputes", headers=investor, json={"transaction_id": deposit["id"], "reason": "not delivered"}))

    assert tally(responses) == {"201": 1, "409 INSUFFICIENT_FUNDS": TIMES - 1}, [r.text for r in responses]
    [dispute] = await listed(client, investor, "/v1/disputes")
    assert (dispute["amount"], dispute["status"]) == ("5000.00", "open")
    assert (await escrow_summary(client, auth))["frozen"] == "5000.00"
    await integrity_ok(client, auth)


@requires_postgres
async def test_resolve_dispute(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    deposit = await funded_app(client, app, auth, shares=5)
    opened = await client.post("/v1/disputes", headers=auth(INVESTOR),
                               json={"transaction_id": deposit["id"], "reason": "not delivered"})
    assert opened.status_code == 201, opened.text
    admin = auth(ADMIN, admin=True)

    responses = await ten_at_once(clients, lambda http: http.post(
        f"/v1/disputes/{opened.json()['id']}/resolve", headers=admin, json={"outcome": "refund", "note": "fair"}))

    assert tally(responses) == {"200": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    await settle(app)
    resolved = (await client.get(f"/v1/disputes/{opened.json()['id']}", headers=admin)).json()
    assert (resolved["status"], resolved["outcome_amount"]) == ("resolved", "5000.00")
    assert [(r.amount, r.status) for r in app.state.sandbox.refunds.values()] == [(500_000, "processed")]
    summary = await escrow_summary(client, auth)
    assert (summary["frozen"], summary["refunded"], summary["held"]) == ("0.00", "5000.00", "0.00")
    await integrity_ok(client, auth)


@requires_postgres
@KEYS
async def test_offer_shares(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth, with_key: bool
) -> None:
    await funded_app(client, app, auth, shares=10, investor=SELLER)
    seller = keyed(auth(SELLER)) if with_key else auth(SELLER)

    def offer(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post("/v1/share-transfers", headers=seller, json=offer_body(10))

    responses = await ten_at_once(clients, offer)

    if with_key:
        made = one_made_the_rest_replayed(responses)
        await replayed_once_more(client, offer, made)
    else:
        assert tally(responses) == {"201": 1, "409 SHARES_UNAVAILABLE": TIMES - 1}, [r.text for r in responses]
    assert len(await listed(client, seller, "/v1/share-transfers")) == 1
    assert await shares_held(client, seller) == {"app-1": (10, 10)}


@requires_postgres
async def test_cancel_share_transfer(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    transfer = await offered_shares(client, app, auth)
    seller = auth(SELLER)

    responses = await ten_at_once(
        clients, lambda http: http.post(f"/v1/share-transfers/{transfer['id']}/cancel", headers=seller))

    assert tally(responses) == {"200": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    assert [t["status"] for t in await listed(client, seller, "/v1/share-transfers")] == ["cancelled"]
    assert await shares_held(client, seller) == {"app-1": (10, 0)}


@requires_postgres
@KEYS
async def test_distribute_revenue(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth, with_key: bool
) -> None:
    await funded_app(client, app, auth, shares=5)
    owner = auth(OWNER)
    revenue = await client.post("/v1/payments", headers=owner, json=revenue_body())
    assert revenue.status_code == 201, revenue.text
    await pay(client, app, revenue.json())
    headers = keyed(owner) if with_key else owner

    def distribute(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post("/v1/apps/app-1/distributions", headers=headers,
                           json={"period": REVENUE_PERIOD, "currency": "NGN"})

    responses = await ten_at_once(clients, distribute)

    if with_key:
        made = one_made_the_rest_replayed(responses)
        await replayed_once_more(client, distribute, made)
    else:
        assert tally(responses) == {"201": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    [distribution] = await listed(client, owner, "/v1/apps/app-1/distributions")
    assert (distribution["amount"], distribution["net_amount"]) == ("10000.00", "9750.00")
    assert [(p["amount"], p["reason"]) for p in await listed(client, auth(INVESTOR), "/v1/payouts/me")] == [
        ("9750.00", "distribution")]
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.revenue("app-1", "NGN")) == 0
    await integrity_ok(client, auth)


def declaration_body(gross: str = "10000.00") -> dict[str, Any]:
    """The running month's revenue: the holdings are today's."""
    return {"period": utcnow().strftime("%Y-%m"), "currency": "NGN", "gross_revenue": gross,
            "email": "owner@example.com"}


async def live_declarations(app: FastAPI) -> list[RevenueDeclaration]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(
            select(RevenueDeclaration).where(RevenueDeclaration.live.is_(True)))).all())


@requires_postgres
@KEYS
async def test_declare_revenue(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth, with_key: bool
) -> None:
    await funded_app(client, app, auth, shares=5)  # 5 of 1,000 shares: 10000.00 earned -> a pool of 50.00
    owner = auth(OWNER)
    headers = keyed(owner) if with_key else owner

    def declare(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post("/v1/apps/app-1/revenue-declarations", headers=headers, json=declaration_body())

    responses = await ten_at_once(clients, declare)

    declarations = await listed(client, owner, "/v1/apps/app-1/revenue-declarations")
    if with_key:
        made = one_made_the_rest_replayed(responses)
        await replayed_once_more(client, declare, made)
        assert [d["id"] for d in declarations] == [made["id"]]
    else:
        assert tally(responses) == {"201": TIMES}, [r.text for r in responses]
        assert len(declarations) == TIMES
        assert sorted(d["status"] for d in declarations) == ["pending"] + ["replaced"] * (TIMES - 1)
        # each replaced one names the one that replaced it: one chain, no fork
        assert len({d["replaced_by"] for d in declarations if d["replaced_by"]}) == TIMES - 1
    [live] = await live_declarations(app)
    assert (live.status, live.pool) == ("pending", 5_000)
    await pay(client, app, {"payment_url": live.payment_url})
    [paid] = await live_declarations(app)
    assert paid.status == "paid"
    async with app.state.runtime.db.unit_of_work() as session:
        assert await session.scalar(select(func.count()).select_from(Distribution)) == 1
    await integrity_ok(client, auth)


@requires_postgres
async def test_declaration_replaced_while_its_payment_is_applied(
    client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth
) -> None:
    """The owner pays a declaration while corrections of it arrive: either the payment is applied first
    (the declaration is paid and every correction is 409), or a correction replaces it first (its payment
    is refunded in full, and every correction is 201). Never both, never a distribution of a replaced one."""
    await funded_app(client, app, auth, shares=5)
    owner = auth(OWNER)
    first = await client.post("/v1/apps/app-1/revenue-declarations", headers=owner, json=declaration_body())
    assert first.status_code == 201, first.text
    declaration = first.json()
    paid = await checkout(client, {"payment_url": declaration["payment_url"]}, "success")
    assert paid.status_code in (200, 303), paid.text

    def verify_or_declare(i: int) -> Request:
        if i % 2:
            return lambda http: http.post(f"/v1/payments/{declaration['payment_reference']}/verify", headers=owner)
        return lambda http: http.post("/v1/apps/app-1/revenue-declarations", headers=owner,
                                      json=declaration_body("20000.00"))

    responses = list(await asyncio.gather(*(verify_or_declare(i)(clients[i % len(clients)]) for i in range(TIMES))))
    await settle(app)

    verified, declared = responses[1::2], responses[0::2]
    assert tally(verified) == {"200": TIMES // 2}, [r.text for r in verified]
    [live] = await live_declarations(app)
    async with app.state.runtime.db.unit_of_work() as session:
        distributions = (await session.scalars(select(Distribution))).all()
        refunds = (await session.scalars(select(Refund))).all()
    if live.id == declaration["id"]:
        assert live.status == "paid"
        assert tally(declared) == {"409 INVALID_STATE": TIMES // 2}, [r.text for r in declared]
        assert [d.source for d in distributions] == [declaration["id"]] and refunds == []
    else:
        assert tally(declared) == {"201": TIMES // 2}, [r.text for r in declared]
        assert distributions == []
        assert [(r.amount, r.reason) for r in refunds] == [(5_000, "revenue declaration replaced")]
    await integrity_ok(client, auth)


@requires_postgres
async def test_retry_payout(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await funded_app(client, app, auth)
    await register_payout_account(client, auth(OWNER))
    release = await approved_release(client, auth)
    admin = auth(ADMIN, admin=True)
    app.state.sandbox.faults.transfer_outcome_next("failed")
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    await settle(app)
    [payout] = await listed(client, auth(OWNER), "/v1/payouts/me")
    assert payout["status"] == "failed"

    responses = await ten_at_once(clients, lambda http: http.post(f"/v1/payouts/{payout['id']}/retry", headers=admin))

    assert tally(responses) == {"200": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    await settle(app)
    [paid] = await listed(client, auth(OWNER), "/v1/payouts/me")
    assert (paid["status"], paid["attempts"]) == ("paid", 2)
    succeeded = [t for t in app.state.sandbox.transfers.values() if t.status == "success"]
    assert [(t.reference, t.amount) for t in succeeded] == [(payout["reference"], 125_000)]
    async with app.state.runtime.db.unit_of_work() as session:
        assert await balance(session, accounts.payable(OWNER, "NGN")) == 0
        assert await session.scalar(select(func.count()).select_from(PayoutAccount)) == 1
    await integrity_ok(client, auth)


@requires_postgres
async def test_finalize_payout(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    await funded_app(client, app, auth)
    await register_payout_account(client, auth(OWNER))
    release = await approved_release(client, auth)
    admin = auth(ADMIN, admin=True)
    app.state.sandbox.transfer_otp = True
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    await settle(app)
    [payout] = await listed(client, auth(OWNER), "/v1/payouts/me")
    assert payout["status"] == "awaiting_otp"
    gateway = app.state.runtime.gateway  # shared by every instance
    original, finalized = gateway.finalize_transfer, []

    async def finalize_transfer(**kwargs: Any) -> Any:
        finalized.append(kwargs["reference"])
        await asyncio.sleep(0.2)  # the others arrive while this one is at the gateway
        return await original(**kwargs)

    gateway.finalize_transfer = finalize_transfer
    responses = await ten_at_once(clients, lambda http: http.post(
        f"/v1/payouts/{payout['id']}/finalize", headers=admin, json={"otp": "123456"}))

    assert tally(responses) == {"200": 1, "409 INVALID_STATE": TIMES - 1}, [r.text for r in responses]
    assert finalized == [payout["reference"]]
    await settle(app)
    [paid] = await listed(client, auth(OWNER), "/v1/payouts/me")
    assert (paid["status"], paid["attempts"]) == ("paid", 1)
    succeeded = [t for t in app.state.sandbox.transfers.values() if t.status == "success"]
    assert [(t.reference, t.amount) for t in succeeded] == [(payout["reference"], 125_000)]
    await integrity_ok(client, auth)


async def _distribution_owing(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> tuple[str, Request]:
    """investor-1 holds app-1 shares and revenue is paid in: the distribution owes investor-1 9750.00."""
    await funded_app(client, app, auth, shares=5)
    revenue = await client.post("/v1/payments", headers=auth(OWNER), json=revenue_body())
    await pay(client, app, revenue.json())
    return INVESTOR, lambda http: http.post("/v1/apps/app-1/distributions", headers=auth(OWNER),
                                            json={"period": REVENUE_PERIOD, "currency": "NGN"})


async def _release_owing(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> tuple[str, Request]:
    """An approved release of 1250.00: executing it owes the owner 1250.00."""
    await funded_app(client, app, auth, shares=5)
    release = await approved_release(client, auth)
    return OWNER, lambda http: http.post(f"/v1/escrow/releases/{release['id']}/execute",
                                         headers=auth(ADMIN, admin=True))


@requires_postgres
@pytest.mark.parametrize(("owing", "posted_to", "owed"), [
    (_distribution_owing, accounts.revenue("app-1", "NGN"), "9750.00"),
    (_release_owing, accounts.escrow("app-1", "NGN"), "1250.00"),
], ids=["distribution", "release"])
async def test_payout_account_registered_while_a_payout_is_written(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth,
    owing: Callable[..., Awaitable[tuple[str, Request]]], posted_to: str, owed: str,
) -> None:
    """PUT /v1/payout-accounts/me racing a route that owes the payee money: the route read that there is no
    payout account, the payee registers one before the route commits. The payout still goes out to it."""
    payee, create = await owing(client, app, auth)
    ledger_account = select(LedgerAccount).where(LedgerAccount.name == posted_to).with_for_update()

    async with app.state.runtime.db.engine.connect() as blocker:
        await blocker.execute(ledger_account)  # the route's posting waits here, its payout written
        created = asyncio.create_task(create(client))
        await blocked_on_a_lock(app.state.runtime.db.engine)
        await register_payout_account(client, auth(payee))
        await blocker.rollback()
    assert (await created).status_code in (200, 201), (await created).text
    await settle(app)

    [payout] = await listed(client, auth(payee), "/v1/payouts/me")
    assert (payout["amount"], payout["status"]) == (owed, "paid")
    await integrity_ok(client, auth)


# ---- webhook endpoints ------------------------------------------------------------------------------------


async def webhook_endpoint(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    response = await client.post("/v1/admin/webhook-endpoints", headers=auth(ADMIN, admin=True),
                                 json={"url": "http://receiver.test/hooks", "events": ["*"]})
    assert response.status_code == 201, response.text
    return response.json()


async def failed_delivery(app: FastAPI, endpoint_id: str) -> None:
    """An event the endpoint's delivery gave up on (written here: a test never sends outside the machine)."""
    async with app.state.runtime.db.unit_of_work() as session:
        event_id = emit(session, "payout.paid", {"id": "po_1"})
        session.add(WebhookDelivery(id="whd_race", endpoint_id=endpoint_id, event_id=event_id,
                                    event_type="payout.paid", status="failed", attempts=22, available_at=utcnow(),
                                    give_up_at=utcnow()))


@requires_postgres
async def test_create_webhook_endpoint(client: httpx.AsyncClient, clients: Clients, auth: Auth) -> None:
    admin = auth(ADMIN, admin=True)
    body = {"url": "http://receiver.test/hooks", "events": ["payment.succeeded"]}
    responses = await ten_at_once(clients, lambda http: http.post("/v1/admin/webhook-endpoints", headers=admin,
                                                                  json=body))
    assert tally(responses) == {"201": TIMES}
    made = [r.json() for r in responses]
    assert len({e["id"] for e in made}) == len({e["secret"] for e in made}) == TIMES
    assert len(await listed(client, admin, "/v1/admin/webhook-endpoints")) == TIMES


@requires_postgres
async def test_rotate_webhook_secret(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    endpoint = await webhook_endpoint(client, auth)
    admin = auth(ADMIN, admin=True)
    responses = await ten_at_once(clients, lambda http: http.patch(
        f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin, json={"rotate_secret": True}))
    assert tally(responses) == {"200": TIMES}
    async with app.state.runtime.db.unit_of_work() as session:
        stored = await session.get(WebhookEndpoint, endpoint["id"])
        assert stored is not None
    assert app.state.runtime.cipher.decrypt(stored.secret_encrypted) in {r.json()["secret"] for r in responses}


@requires_postgres
async def test_delete_webhook_endpoint(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    endpoint = await webhook_endpoint(client, auth)
    await failed_delivery(app, endpoint["id"])  # removed with its endpoint
    admin = auth(ADMIN, admin=True)
    responses = await ten_at_once(clients, lambda http: http.delete(
        f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin))
    assert tally(responses) == {"204": 1, "404 NOT_FOUND": TIMES - 1}
    async with app.state.runtime.db.unit_of_work() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


@requires_postgres
async def test_retry_webhook_delivery(client: httpx.AsyncClient, clients: Clients, app: FastAPI, auth: Auth) -> None:
    endpoint = await webhook_endpoint(client, auth)
    await failed_delivery(app, endpoint["id"])
    admin = auth(ADMIN, admin=True)
    responses = await ten_at_once(clients, lambda http: http.post(
        f"/v1/admin/webhook-endpoints/{endpoint['id']}/deliveries/whd_race/retry", headers=admin))
    assert tally(responses) == {"200": TIMES}
    async with app.state.runtime.db.unit_of_work() as session:
        [row] = (await session.scalars(select(WebhookDelivery))).all()
    assert (row.status, row.attempts) == ("pending", 0)
