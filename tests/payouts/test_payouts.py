"""Payout accounts and payouts as Paystack transfers: timeouts, outages, failures, retries, never paid twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select

from app.gateway.signature import sign
from app.gateway.types import TransferResult
from app.ledger import accounts
from app.ledger.service import balance
from app.models import JournalEntry, LedgerAccount, Payout, PayoutAccount, Posting, WebhookEvent
from app.payouts.tasks import reconcile_payouts, send_pending_payouts
from app.webhooks.tasks import process_inbox
from tests.conftest import requires_postgres
from tests.escrow.test_full_path import approve, complete, milestone, register_payout_account
from tests.helpers import APPROVERS, OWNER, invest, pay, paystack_sample, put_app, settle

Auth = Callable[..., dict[str, str]]
RELEASED = 125_000  # 25% of a 5000.00 investment


async def _release(client: httpx.AsyncClient, app: FastAPI, auth: Auth, *, account: bool = True) -> dict[str, Any]:
    """A 1250.00 release executed for the owner; returns the owner's payout, not yet sent."""
    admin, owner = auth("admin-1", admin=True), auth(OWNER)
    await put_app(client, admin)
    await pay(client, app, await invest(client, auth("investor-1"), shares=5))
    if account:
        await register_payout_account(client, owner)
    first = await milestone(client, owner, "25")
    await complete(client, owner, first["id"])
    release = (await client.post("/v1/escrow/releases", headers=owner, json={"milestone_id": first["id"]})).json()
    for approver in APPROVERS:
        await approve(client, auth(approver), release["id"])
    executed = await client.post(f"/v1/escrow/releases/{release['id']}/execute", headers=admin)
    assert executed.status_code == 200, executed.text
    return await _payout(client, auth)


async def _payout(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    [payout] = (await client.get("/v1/payouts/me", headers=auth(OWNER))).json()["items"]
    return payout


async def _payable(app: FastAPI) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await balance(session, accounts.payable(OWNER, "NGN"))


async def _retry(client: httpx.AsyncClient, auth: Auth, payout_id: str) -> httpx.Response:
    return await client.post(f"/v1/payouts/{payout_id}/retry", headers=auth("admin-1", admin=True))


async def _books_ok(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    """Integrity holds, no reference was paid twice, and the ledger's payout outflow is exactly the paid payouts."""
    report = (await client.get("/v1/admin/integrity", headers=auth("admin-1", admin=True))).json()
    assert report["ok"], report
    sandbox = app.state.sandbox
    async with app.state.runtime.db.unit_of_work() as session:
        payouts = (await session.scalars(select(Payout))).all()
        # paid out, less what came back after it was paid
        paid_out = await session.scalar(
            select(func.coalesce(func.sum(Posting.amount), 0))
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(JournalEntry.kind.in_(("payout_paid", "payout_reversed")),
                   LedgerAccount.name == accounts.gateway("NGN"))
        )
        in_flight = await balance(session, accounts.payout_in_flight("NGN"))
    succeeded = [t for t in sandbox.transfers.values() if t.status == "success"]
    assert len({t.reference for t in succeeded}) == len(succeeded)
    for payout in payouts:
        transfer = sandbox.transfers.get(payout.reference)
        if payout.status == "paid":
            assert transfer is not None and transfer.status == "success" and transfer.amount == payout.amount
        elif payout.status in ("failed", "reversed", "pending", "awaiting_funds"):
            assert transfer is None or transfer.status != "success", payout.status
    paid = sum(p.amount for p in payouts if p.status == "paid")
    assert paid_out == paid == sum(t.amount for t in succeeded)
    assert in_flight == sum(p.amount for p in payouts if p.status in ("processing", "awaiting_otp"))


async def test_payout_account_shows_only_the_last_four_digits(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    owner = auth(OWNER)
    missing = await client.get("/v1/payout-accounts/me", headers=owner)
    assert missing.status_code == 200 and missing.json() == {"items": []}

    registered = await client.put("/v1/payout-accounts/me", headers=owner,
                                  json={"bank_code": "057", "account_number": "0123456789", "currency": "NGN"})
    assert registered.status_code == 200, registered.text
    account = registered.json()
    assert account["account_number_last4"] == account["last4"] == "6789"
    assert account["recipient_code"].startswith("RCP_") and account["account_name"]
    assert (account["type"], account["is_default"]) == ("nuban", True)
    assert "0123456789" not in registered.text
    shown = await client.get("/v1/payout-accounts/me", headers=owner)
    assert shown.json() == {"items": [account]} and "0123456789" not in shown.text

    async with app.state.runtime.db.unit_of_work() as session:
        row = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == OWNER))
        assert row is not None
        assert "0123456789" not in row.account_number_encrypted
        assert app.state.runtime.cipher.decrypt(row.account_number_encrypted) == "0123456789"
    assert app.state.sandbox.recipients[account["recipient_code"]].account_number == "0123456789"

    # the same account again keeps the same Paystack recipient
    again = await client.put("/v1/payout-accounts/me", headers=owner,
                             json={"bank_code": "057", "account_number": "0123456789", "currency": "NGN"})
    assert again.status_code == 200 and again.json()["recipient_code"] == account["recipient_code"]
    assert again.json()["id"] == account["id"]


@pytest.mark.parametrize(
    ("bank_code", "account_number"),
    [("999", "0123456789"), ("057", "012345678"), ("057", "01234567890"),
     *[(bank, "0000000000") for bank in ("044", "011", "058", "033", "057")]],
)
async def test_an_account_the_gateway_cannot_resolve_is_the_callers_error(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, bank_code: str, account_number: str
) -> None:
    refused = await client.put("/v1/payout-accounts/me", headers=auth(OWNER),
                               json={"bank_code": bank_code, "account_number": account_number, "currency": "NGN"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "INVALID_BANK_ACCOUNT"
    assert error["details"]["gateway_status"] == 422
    assert error["details"]["gateway_code"] == "invalid_bank_details"
    assert "resolve" in error["details"]["gateway_message"].lower()
    assert account_number not in refused.text
    assert (await client.get("/v1/payout-accounts/me", headers=auth(OWNER))).json() == {"items": []}
    assert not app.state.sandbox.recipients


async def test_a_currency_the_bank_does_not_pay_out_in_is_refused(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    refused = await client.put("/v1/payout-accounts/me", headers=auth(OWNER),
                               json={"bank_code": "057", "account_number": "0123456789", "currency": "USD"})
    assert refused.status_code == 422, refused.text  # was a 502 GATEWAY_ERROR (found by schemathesis)
    assert refused.json()["error"]["code"] == "CURRENCY_NOT_SUPPORTED"
    assert (await client.get("/v1/payout-accounts/me", headers=auth(OWNER))).json() == {"items": []}


async def test_a_malformed_account_number_is_a_validation_error(client: httpx.AsyncClient, auth: Auth) -> None:
    refused = await client.put("/v1/payout-accounts/me", headers=auth(OWNER),
                               json={"bank_code": "057", "account_number": "01234abcde", "currency": "NGN"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_payout_paid(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth)
    assert (payout["status"], payout["amount"], payout["reason"]) == ("pending", "1250.00", "release")
    assert await _payable(app) == RELEASED
    await settle(app)

    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 1)
    assert await _payable(app) == 0
    _error(await _retry(client, auth, paid["id"]), 409, "INVALID_STATE")
    retry_as_owner = await client.post(f"/v1/payouts/{paid['id']}/retry", headers=auth(OWNER))
    assert retry_as_owner.status_code == 403
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"gateway_timeout_seconds": 0.5}])
async def test_transfer_timeout_is_not_a_failure(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth)
    # The transfer is made but its answer comes after the client's timeout, and so does the answer to the
    # client's own retry (which Paystack refuses: the reference is taken).
    app.state.sandbox.faults.timeout_next(2, path_contains="/transfer", delay=1.0)

    await send_pending_payouts(app.state.runtime)
    unknown = await _payout(client, auth)
    assert unknown["status"] == "processing", unknown
    assert await _payable(app) == 0  # in flight, not owed again
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")

    await app.state.sandbox.wait_idle()  # the sandbox settles the transfer; its webhook waits in the inbox
    assert app.state.sandbox.transfers[payout["reference"]].status == "success"
    assert await reconcile_payouts(app.state.runtime, older_than_seconds=0) == 1
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"]) == ("paid", payout["reference"])

    await settle(app)  # the late transfer.success webhook changes nothing
    assert (await _payout(client, auth))["status"] == "paid"
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"gateway_timeout_seconds": 0.5}])
async def test_transfer_retried_after_a_timeout_is_not_a_failure(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    # Only the first answer is late: the client's retry hears "reference already exists", which must not
    # count as a failure (the first transfer went through).
    app.state.sandbox.faults.timeout_next(1, path_contains="/transfer", delay=1.0)

    await send_pending_payouts(app.state.runtime)
    assert (await _payout(client, auth))["status"] in ("processing", "paid")
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 1)
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


async def test_transfer_outage_is_reconciled_and_resent_under_the_same_reference(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.fail_next(2, status=500, path_contains="/transfer")  # the call and its retry

    await send_pending_payouts(app.state.runtime)
    unknown = await _payout(client, auth)
    assert unknown["status"] == "processing", unknown
    assert payout["reference"] not in app.state.sandbox.transfers
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")

    # the transfer never reached Paystack: verify says 404, the reconciler sends it again
    await reconcile_payouts(app.state.runtime, older_than_seconds=0)
    assert app.state.sandbox.transfers[payout["reference"]].amount == RELEASED
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"]) == ("paid", payout["reference"])
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


async def test_conclusive_failure_returns_the_money_and_retry_pays_once(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.transfer_outcome_next("failed")
    await settle(app)

    failed = await _payout(client, auth)
    assert failed["status"] == "failed" and failed["last_error"]
    assert await _payable(app) == RELEASED  # owed again
    await _books_ok(client, app, auth)

    retried = await _retry(client, auth, payout["id"])
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["reference"]) == ("pending", payout["reference"])
    await settle(app)

    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 2)
    assert await _payable(app) == 0
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    await _books_ok(client, app, auth)


async def test_a_late_answer_about_the_failed_transfer_never_settles_its_retry(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconciler asks about a payout and hears that its transfer failed; before it applies that, the
    failure is recorded by the webhook, an admin retries and the second transfer goes out. The answer
    was about the first transfer: applied to the second, it failed a payout that the gateway then paid,
    and the books owed the money again."""
    payout = await _release(client, app, auth)
    rt, sandbox = app.state.runtime, app.state.sandbox
    sandbox.faults.transfer_outcome_next("failed")
    await send_pending_payouts(rt)
    await sandbox.wait_idle()  # the first transfer failed; its webhook waits in the inbox
    verify = rt.gateway.verify_transfer

    async def verify_while_the_payout_moves_on(reference: str) -> TransferResult:
        monkeypatch.setattr(rt.gateway, "verify_transfer", verify)
        answer = await verify(reference)
        assert answer.status == "failed"
        await process_inbox(rt)
        assert (await _retry(client, auth, payout["id"])).status_code == 200
        assert await send_pending_payouts(rt) == 1
        return answer

    monkeypatch.setattr(rt.gateway, "verify_transfer", verify_while_the_payout_moves_on)
    await reconcile_payouts(rt, older_than_seconds=0)
    await settle(app)

    paid = await _payout(client, auth)
    assert (paid["status"], paid["attempts"]) == ("paid", 2)
    assert [t.status for t in sandbox.transfer_history] == ["failed", "success"]
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


async def test_reversed_transfer_returns_the_money(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.transfer_outcome_next("reversed")
    await settle(app)

    reversed_ = await _payout(client, auth)
    assert reversed_["status"] == "reversed"
    assert await _payable(app) == RELEASED
    await _books_ok(client, app, auth)

    assert (await _retry(client, auth, payout["id"])).status_code == 200
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


async def test_payout_waits_for_an_account(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    payout = await _release(client, app, auth, account=False)
    assert payout["awaiting_payout_account"] is True
    await settle(app)
    assert (await _payout(client, auth))["status"] == "awaiting_payout_account"
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")
    assert not app.state.sandbox.transfers

    await register_payout_account(client, auth(OWNER))
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    await _books_ok(client, app, auth)


async def _entries(app: FastAPI, kind: str) -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == kind))


async def _post_event(client: httpx.AsyncClient, app: FastAPI, event: dict[str, Any]) -> None:
    """Deliver a webhook body as Paystack would: compact JSON, signed with the secret key."""
    body = json.dumps(event, separators=(",", ":")).encode()
    secret = app.state.runtime.settings.paystack_secret_key.get_secret_value()
    headers = {"content-type": "application/json", "x-paystack-signature": sign(body, secret)}
    response = await client.post("/v1/webhooks/paystack", content=body, headers=headers)
    assert response.status_code == 200, response.text


def _real_transfer_event(name: str, payout: dict[str, Any]) -> dict[str, Any]:
    """One of Paystack's own transfer webhook bodies, made about `payout`."""
    event = paystack_sample(name)
    event["data"].update(reference=payout["reference"], amount=RELEASED)
    return event


async def _lose_sandbox_transfer_webhooks(app: FastAPI) -> None:
    """The sandbox's own transfer webhooks never arrive: only what a test posts can settle a payout."""
    await app.state.sandbox.wait_idle()
    async with app.state.runtime.db.unit_of_work() as session:
        await session.execute(delete(WebhookEvent).where(WebhookEvent.event.like("transfer.%")))


async def _inbox(app: FastAPI) -> list[tuple[str, str]]:
    async with app.state.runtime.db.unit_of_work() as session:
        rows = (await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))).all()
        return [(row.event, row.status) for row in rows if row.event.startswith("transfer.")]


async def test_a_transfer_reversed_after_it_was_paid_returns_the_money(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    assert await _payable(app) == 0

    # the receiving bank sends the money back: transfer.reversed, with transferred_at still set
    await app.state.sandbox.reverse_transfer(payout["reference"])
    transfer = app.state.sandbox.transfers[payout["reference"]]
    assert transfer.status == "reversed" and transfer.transferred_at is not None
    await settle(app)

    reversed_ = await _payout(client, auth)
    assert (reversed_["status"], reversed_["paid_at"]) == ("reversed", None)
    assert "reversed after it was paid" in reversed_["last_error"]
    assert await _payable(app) == RELEASED  # owed again, and the ledger shows why
    assert await _entries(app, "payout_reversed") == 1
    assert await _inbox(app) == [("transfer.success", "processed"), ("transfer.reversed", "processed")]
    await _books_ok(client, app, auth)

    # the same event again, and the same reversal told by another body: nothing more
    await _post_event(client, app, {"event": "transfer.reversed", "data": transfer.webhook_data()})
    await _post_event(client, app, _real_transfer_event("webhook_transfer_reversed", payout))
    await settle(app)
    assert (await _payout(client, auth))["status"] == "reversed"
    assert await _payable(app) == RELEASED
    assert await _entries(app, "payout_reversed") == 1
    await _books_ok(client, app, auth)

    # a retry pays again, under the same reference
    retried = await _retry(client, auth, payout["id"])
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["reference"]) == ("pending", payout["reference"])
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 2)
    assert paid["paid_at"] is not None
    assert await _payable(app) == 0
    _error(await _retry(client, auth, payout["id"]), 409, "INVALID_STATE")
    await _books_ok(client, app, auth)


async def test_a_transfer_the_sandbox_reverses_after_success_returns_the_money(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.transfer_outcome_next("reversed_after_success")
    await settle(app)

    transfer = app.state.sandbox.transfers[payout["reference"]]
    assert transfer.status == "reversed" and transfer.transferred_at is not None
    # both events arrive; whichever the service sees first, the payout ends reversed and the money owed again
    assert sorted(event for event, _ in await _inbox(app)) == ["transfer.reversed", "transfer.success"]
    reversed_ = await _payout(client, auth)
    assert reversed_["status"] == "reversed"
    assert await _payable(app) == RELEASED
    await _books_ok(client, app, auth)

    assert (await _retry(client, auth, payout["id"])).status_code == 200
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"reconcile_pending_after_seconds": 3600}])
async def test_paystacks_transfer_reversed_body_reverses_a_paid_payout(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    await settle(app)
    assert (await _payout(client, auth))["status"] == "paid"
    await app.state.sandbox.reverse_transfer(payout["reference"], send_webhook=False)
    event = _real_transfer_event("webhook_transfer_reversed", payout)
    assert event["data"]["transferred_at"] and event["data"]["status"] == "reversed"

    await _post_event(client, app, event)
    await app.state.worker.drain()

    reversed_ = await _payout(client, auth)
    assert reversed_["status"] == "reversed" and "after it was paid" in reversed_["last_error"]
    assert await _payable(app) == RELEASED
    await _books_ok(client, app, auth)

    await _post_event(client, app, event)  # Paystack delivers it again
    await app.state.worker.drain()
    assert await _payable(app) == RELEASED
    assert await _entries(app, "payout_reversed") == 1
    assert (await _inbox(app))[-1] == ("transfer.reversed", "processed")

    assert (await _retry(client, auth, payout["id"])).status_code == 200
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 2)
    assert await _payable(app) == 0
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"reconcile_pending_after_seconds": 3600}])
async def test_paystacks_transfer_success_body_pays_the_payout(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    await send_pending_payouts(app.state.runtime)
    await _lose_sandbox_transfer_webhooks(app)
    assert (await _payout(client, auth))["status"] == "processing"

    await _post_event(client, app, _real_transfer_event("webhook_transfer_success", payout))
    await app.state.worker.drain()

    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 1)
    assert await _payable(app) == 0
    assert await _inbox(app) == [("transfer.success", "processed")]
    await _books_ok(client, app, auth)


@pytest.mark.parametrize("settings_overrides", [{"reconcile_pending_after_seconds": 3600}])
async def test_paystacks_transfer_failed_body_returns_the_money(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    payout = await _release(client, app, auth)
    app.state.sandbox.faults.transfer_outcome_next("failed")
    await send_pending_payouts(app.state.runtime)
    await _lose_sandbox_transfer_webhooks(app)

    await _post_event(client, app, _real_transfer_event("webhook_transfer_failed", payout))
    await app.state.worker.drain()

    failed = await _payout(client, auth)
    assert failed["status"] == "failed" and failed["last_error"]
    assert await _payable(app) == RELEASED
    await _books_ok(client, app, auth)

    assert (await _retry(client, auth, payout["id"])).status_code == 200
    await settle(app)
    paid = await _payout(client, auth)
    assert (paid["status"], paid["reference"], paid["attempts"]) == ("paid", payout["reference"], 2)
    await _books_ok(client, app, auth)


async def _register_at_once(client: httpx.AsyncClient, app: FastAPI, auth: Auth, count: int = 10) -> None:
    """A new user's first payout-account registrations, all at once: each caller gets its answer, one row."""
    who = auth("newcomer-1")
    responses = await asyncio.gather(*(
        client.put("/v1/payout-accounts/me", headers=who,
                   json={"bank_code": "057", "account_number": "0123456789", "currency": "NGN"})
        for _ in range(count)
    ))
    assert [r.status_code for r in responses] == [200] * count, [r.text for r in responses if r.status_code != 200]
    assert len({r.json()["recipient_code"] for r in responses}) == 1
    async with app.state.runtime.db.unit_of_work() as session:
        rows = (await session.scalars(select(PayoutAccount).where(PayoutAccount.user_id == "newcomer-1"))).all()
    assert len(rows) == 1
    shown = (await client.get("/v1/payout-accounts/me", headers=who)).json()["items"]
    assert [a["id"] for a in shown] == [responses[-1].json()["id"]] and shown[0]["is_default"]


@requires_postgres
async def test_first_registrations_at_once_on_postgresql(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await _register_at_once(client, app, auth)


async def test_first_registrations_at_once(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    """The same on whichever engine the suite runs (SQLite serialises the writers)."""
    await _register_at_once(client, app, auth)


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
