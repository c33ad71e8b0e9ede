"""Payouts against Paystack's own answers (gateway mode `test`, Paystack played by respx): older
transfer shapes without references, OTP, and bank details Paystack refuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from app.core.config import Settings
from app.ledger import accounts
from app.ledger.service import balance, move, post
from app.main import create_app
from app.models import Payout
from app.payouts.service import queue_payout
from app.payouts.tasks import reconcile_payouts, send_pending_payouts
from tests.helpers import mock_paystack, paystack_sample

Auth = Callable[..., dict[str, str]]
# Loopback, so that nothing respx misses could leave the machine.
PAYSTACK = "http://127.0.0.1:9/paystack"
BANK = {"bank_code": "058", "account_number": "0001234567", "currency": "NGN"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"payment_gateway_mode": "test", "paystack_secret_key": "sk_test_payouts_0123456789abcdef",
            "paystack_base_url": PAYSTACK}


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    # No loopback: the gateway client calls PAYSTACK, where respx answers.
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        yield application


@pytest.fixture
def paystack() -> Iterator[respx.MockRouter]:
    with mock_paystack(base_url=PAYSTACK, assert_all_called=False) as router:
        # The worker reads the balance before sending: Paystack's sample, topped up to cover the tests' payouts.
        balance = paystack_sample("balance")
        balance["data"][0]["balance"] = 10**12
        router.get("/balance").mock(return_value=answer(balance))
        yield router


def answer(sample: dict[str, Any], status_code: int = 200) -> httpx.Response:
    return httpx.Response(status_code, json=sample)


def refusal(status_code: int, message: str, code: str) -> httpx.Response:
    return httpx.Response(status_code, json={"status": False, "message": message, "type": "validation_error",
                                             "code": code, "meta": {"nextStep": "Check the details"}})


def recipient_answer(recipient_code: str) -> httpx.Response:
    sample = paystack_sample("transferrecipient_create_nuban_guide")
    sample["data"]["recipient_code"] = recipient_code
    return answer(sample, 201)


def verify_answer(reference: str, amount: int, status: str) -> httpx.Response:
    sample = paystack_sample("transfer_verify")
    sample["data"].update(reference=reference, amount=amount, status=status)
    return answer(sample)


async def register(client: httpx.AsyncClient, who: dict[str, str]) -> dict[str, Any]:
    response = await client.put("/v1/payout-accounts/me", headers=who, json=BANK)
    assert response.status_code == 200, response.text
    return response.json()


async def owe(app: FastAPI, user_id: str, amount: int, reason: str) -> str:
    """Money owed to `user_id` as a payout (as a release or a distribution leaves it); its reference."""
    async with app.state.runtime.db.unit_of_work() as session:
        await post(session, kind="owed", legs=move(accounts.gateway("NGN"), accounts.payable(user_id, "NGN"), amount))
        payout = await queue_payout(session, user_id=user_id, amount=amount, currency="NGN", reason=reason,
                                    source_id=f"{reason}-1")
    return payout.reference


async def payouts(app: FastAPI) -> dict[str, Payout]:
    async with app.state.runtime.db.unit_of_work() as session:
        return {p.reference: p for p in (await session.scalars(select(Payout))).all()}


async def payable(app: FastAPI, user_id: str) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await balance(session, accounts.payable(user_id, "NGN"))


async def integrity_ok(client: httpx.AsyncClient, auth: Auth) -> None:
    report = (await client.get("/v1/admin/integrity", headers=auth("admin-1", admin=True))).json()
    assert report["ok"], report


# ---- transfers answered in older shapes -----------------------------------------------------------------


async def test_a_transfer_answered_otp_without_its_reference_awaits_its_otp_until_verified(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    paystack.get("/bank/resolve").mock(return_value=answer(paystack_sample("bank_resolve_with_bank_id")))
    paystack.post("/transferrecipient").mock(return_value=recipient_answer("RCP_t0ya41mp35flk40"))
    reference = await owe(app, "owner-1", 3794800, "release")
    await register(client, auth("owner-1"))
    # Paystack's older answer (OTP on): no reference at all.
    legacy = paystack_sample("transfer_initiate_otp_legacy")
    assert "reference" not in legacy["data"]
    sent = paystack.post("/transfer").mock(return_value=answer(legacy))

    await send_pending_payouts(app.state.runtime)

    assert json.loads(sent.calls.last.request.content)["reference"] == reference
    payout = (await payouts(app))[reference]
    assert (payout.status, payout.transfer_code) == ("awaiting_otp", "TRF_1ptvuv321ahaa7q")
    assert payout.last_error is None
    assert await payable(app, "owner-1") == 0  # in flight, not owed again
    shown = (await client.get("/v1/payouts/me", headers=auth("owner-1"))).json()["items"]
    assert [(p["status"], p["reference"]) for p in shown] == [("awaiting_otp", reference)]

    # OTP still pending: it stays awaiting its OTP, nothing is sent again
    paystack.get(f"/transfer/verify/{reference}").mock(return_value=verify_answer(reference, 3794800, "otp"))
    await reconcile_payouts(app.state.runtime, older_than_seconds=0)
    assert (await payouts(app))[reference].status == "awaiting_otp"

    # finalized elsewhere (Paystack's dashboard): the reconciler hears it succeeded

    paystack.get(f"/transfer/verify/{reference}").mock(return_value=verify_answer(reference, 3794800, "success"))
    await reconcile_payouts(app.state.runtime, older_than_seconds=0)
    paid = (await payouts(app))[reference]
    assert (paid.status, paid.attempts) == ("paid", 1)
    assert sent.call_count == 1
    assert await payable(app, "owner-1") == 0
    await integrity_ok(client, auth)


async def test_a_transfer_answer_naming_another_transfer_leaves_the_payout_processing(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    paystack.get("/bank/resolve").mock(return_value=answer(paystack_sample("bank_resolve_with_bank_id")))
    paystack.post("/transferrecipient").mock(return_value=recipient_answer("RCP_t0ya41mp35flk40"))
    reference = await owe(app, "owner-1", 100000, "release")
    await register(client, auth("owner-1"))
    paystack.post("/transfer").mock(return_value=answer(paystack_sample("transfer_initiate_success")))

    await send_pending_payouts(app.state.runtime)

    payout = (await payouts(app))[reference]
    assert (payout.status, payout.transfer_code) == ("processing", None)  # not settled by someone else's answer
    assert await payable(app, "owner-1") == 0


async def test_a_bulk_answer_without_references_is_matched_only_where_unambiguous(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    paystack.get("/bank/resolve").mock(return_value=answer(paystack_sample("bank_resolve_with_bank_id")))
    paystack.post("/transferrecipient").mock(
        side_effect=[recipient_answer("RCP_db342dvqvz9qcrn"), recipient_answer("RCP_other0000000001")]
    )
    # holder-1 is owed two equal amounts: the answer's items for them cannot be told apart
    twins = [await owe(app, "holder-1", 50000, "distribution") for _ in range(2)]
    single = await owe(app, "holder-2", 70000, "distribution")
    await register(client, auth("holder-1"))
    await register(client, auth("holder-2"))
    legacy = paystack_sample("transfer_bulk_legacy")
    assert all("reference" not in item and "status" not in item for item in legacy["data"])
    legacy["data"].append({"recipient": "RCP_other0000000001", "amount": 70000, "transfer_code": "TRF_single00000001",
                           "currency": "NGN"})
    legacy["message"] = "3 transfers queued."
    bulk = paystack.post("/transfer/bulk").mock(return_value=answer(legacy))

    await send_pending_payouts(app.state.runtime)

    sent = json.loads(bulk.calls.last.request.content)["transfers"]
    assert sorted(item["reference"] for item in sent) == sorted([*twins, single])
    rows = await payouts(app)
    assert all(rows[reference].status == "processing" for reference in [*twins, single])
    assert [rows[reference].transfer_code for reference in twins] == [None, None]  # never guessed
    assert rows[single].transfer_code == "TRF_single00000001"
    assert await payable(app, "holder-1") == await payable(app, "holder-2") == 0

    for reference, status in ((twins[0], "success"), (twins[1], "failed"), (single, "success")):
        paystack.get(f"/transfer/verify/{reference}").mock(
            return_value=verify_answer(reference, rows[reference].amount, status)
        )
    await reconcile_payouts(app.state.runtime, older_than_seconds=0)

    rows = await payouts(app)
    assert [rows[r].status for r in (*twins, single)] == ["paid", "failed", "paid"]
    assert bulk.call_count == 1
    assert await payable(app, "holder-1") == 50000  # the failed one is owed again
    assert await payable(app, "holder-2") == 0
    await integrity_ok(client, auth)


async def test_a_bulk_answer_in_the_current_shape_settles_what_it_says(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    paystack.get("/bank/resolve").mock(return_value=answer(paystack_sample("bank_resolve_with_bank_id")))
    paystack.post("/transferrecipient").mock(return_value=recipient_answer("RCP_gd9vgag7n5lr5ix"))
    reference = await owe(app, "holder-1", 20000, "distribution")
    await register(client, auth("holder-1"))
    sample = paystack_sample("transfer_bulk")
    sample["data"] = sample["data"][:1]
    sample["data"][0]["reference"] = reference
    paystack.post("/transfer/bulk").mock(return_value=answer(sample))

    await send_pending_payouts(app.state.runtime)

    assert (await payouts(app))[reference].status == "paid"
    assert await payable(app, "holder-1") == 0
    await integrity_ok(client, auth)


# ---- bank details Paystack refuses ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/bank/resolve", "/transferrecipient"])
async def test_bank_details_paystack_refuses_are_the_callers_error(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter, path: str
) -> None:
    refused = refusal(422 if path == "/bank/resolve" else 400,
                      "Could not resolve account name. Check parameters or try again.", "invalid_bank_details")
    resolve = paystack.get("/bank/resolve").mock(
        return_value=refused if path == "/bank/resolve" else answer(paystack_sample("bank_resolve"))
    )
    paystack.post("/transferrecipient").mock(return_value=refused)

    response = await client.put("/v1/payout-accounts/me", headers=auth("owner-1"), json=BANK)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_BANK_ACCOUNT"
    assert error["details"] == {
        "gateway_message": "Could not resolve account name. Check parameters or try again.",
        "gateway_status": refused.status_code,
        "gateway_code": "invalid_bank_details",
    }
    assert BANK["account_number"] not in response.text
    assert resolve.call_count == 1  # a refusal is not retried
    assert (await client.get("/v1/payout-accounts/me", headers=auth("owner-1"))).json() == {"items": []}


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, json={"status": False, "message": "An error occurred"}),
     httpx.Response(401, json={"status": False, "message": "Invalid key"}),
     httpx.ConnectError("refused"),
     httpx.Response(200, json={"status": True, "message": "Account number resolved",
                               "data": {"account_number": BANK["account_number"], "account_name": 42}})],
    ids=["500", "401", "unreachable", "off-contract"],
)
async def test_gateway_trouble_while_registering_stays_a_gateway_error(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter,
    failure: httpx.Response | Exception,
) -> None:
    paystack.get("/bank/resolve").mock(side_effect=[failure] * 5)

    response = await client.put("/v1/payout-accounts/me", headers=auth("owner-1"), json=BANK)

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "GATEWAY_ERROR"
    assert BANK["account_number"] not in response.text
    assert (await client.get("/v1/payout-accounts/me", headers=auth("owner-1"))).json() == {"items": []}


async def test_a_registration_paystack_accepts(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    paystack.get("/bank/resolve").mock(return_value=answer(paystack_sample("bank_resolve")))
    recipient = paystack_sample("transferrecipient_create_nuban")
    paystack.post("/transferrecipient").mock(return_value=answer(recipient, 201))

    account = await register(client, auth("owner-1"))

    assert account["recipient_code"] == "RCP_m7ljkv8leesep7p"
    assert (account["account_name"], account["account_number_last4"]) == ("WES GIBBONS", "4567")


# ---- transfer OTP and the balance, as Paystack answers them -------------------------------------------------


async def test_a_transfer_paystack_holds_for_its_otp_is_finalized_and_paid(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    paystack.get("/bank/resolve").mock(return_value=answer(paystack_sample("bank_resolve_with_bank_id")))
    paystack.post("/transferrecipient").mock(return_value=recipient_answer("RCP_t0ya41mp35flk40"))
    reference = await owe(app, "owner-1", 20000, "release")
    await register(client, auth("owner-1"))
    held = paystack_sample("transfer_initiate_otp")
    held["data"]["reference"] = reference
    sent = paystack.post("/transfer").mock(return_value=answer(held))

    await send_pending_payouts(app.state.runtime)

    payout = (await payouts(app))[reference]
    assert (payout.status, payout.transfer_code) == ("awaiting_otp", "TRF_1aqrqhoomp0rjro")
    admin = auth("admin-1", admin=True)
    url = f"/v1/payouts/{payout.id}/finalize"

    # Paystack refuses the OTP, and the transfer still waits for one
    held_verified = paystack_sample("transfer_verify")
    held_verified["data"].update(reference=reference, amount=20000, status="otp", transfer_code="TRF_1aqrqhoomp0rjro")
    paystack.get(f"/transfer/verify/{reference}").mock(return_value=answer(held_verified))
    finalize = paystack.post("/transfer/finalize_transfer")
    finalize.mock(return_value=refusal(400, "Invalid OTP", "invalid_otp"))
    refused = await client.post(url, headers=admin, json={"otp": "111111"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "INVALID_OTP", refused.text
    assert "111111" not in refused.text
    assert (await payouts(app))[reference].status == "awaiting_otp"

    finalized = paystack_sample("transfer_finalize")
    finalized["data"].update(reference=reference, amount=20000, transfer_code="TRF_1aqrqhoomp0rjro", status="pending")
    finalize.mock(return_value=answer(finalized))
    accepted = await client.post(url, headers=admin, json={"otp": "928783"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "processing"
    assert json.loads(finalize.calls.last.request.content) == {"transfer_code": "TRF_1aqrqhoomp0rjro", "otp": "928783"}

    paystack.get(f"/transfer/verify/{reference}").mock(return_value=verify_answer(reference, 20000, "success"))
    await reconcile_payouts(app.state.runtime, older_than_seconds=0)
    assert (await payouts(app))[reference].status == "paid"
    assert sent.call_count == 1 and finalize.call_count == 2
    assert await payable(app, "owner-1") == 0
    await integrity_ok(client, auth)


async def test_a_balance_paystack_shows_too_low_keeps_the_payout_owed(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, paystack: respx.MockRouter
) -> None:
    paystack.get("/bank/resolve").mock(return_value=answer(paystack_sample("bank_resolve_with_bank_id")))
    paystack.post("/transferrecipient").mock(return_value=recipient_answer("RCP_t0ya41mp35flk40"))
    reference = await owe(app, "owner-1", 1700001, "release")  # Paystack's sample balance is 1700000
    await register(client, auth("owner-1"))
    paystack.get("/balance").mock(return_value=answer(paystack_sample("balance")))
    sent = paystack.post("/transfer")

    await send_pending_payouts(app.state.runtime)

    assert (await payouts(app))[reference].status == "awaiting_funds"
    assert not sent.called
    assert await payable(app, "owner-1") == 1700001
    await integrity_ok(client, auth)
