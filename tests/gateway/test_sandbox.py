"""The Paystack sandbox, driven over HTTP the way the service's Paystack client drives it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.gateway.sandbox import MOUNT_PREFIX, Sandbox
from app.gateway.sandbox.banks import BANKS
from app.gateway.signature import sign, verify_signature
from tests.helpers import paystack_sample

SECRET = "sk_test_sandbox_suite_0123456789"
BASE = "http://test"
WEBHOOK_PATH = "/v1/webhooks/paystack"
API = MOUNT_PREFIX


@dataclass
class Receiver:
    """The service's webhook endpoint, as far as the sandbox can tell."""

    deliveries: list[tuple[bytes, str | None]] = field(default_factory=list)
    attempts: int = 0
    failures_left: int = 0
    # When set, each delivery waits for it: a receiver that is slow to answer.
    hold: asyncio.Event | None = None
    # Set by a middleware while a checkout POST is being handled: a delivery must never overlap it.
    checkout_in_progress: bool = False
    overlapped_checkout: bool = False

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.deliveries]

    def event_names(self) -> list[str]:
        return [event["event"] for event in self.events()]


@dataclass
class Env:
    client: httpx.AsyncClient
    sandbox: Sandbox
    receiver: Receiver
    transport: httpx.ASGITransport


class _MarkCheckout:
    def __init__(self, app: ASGIApp, receiver: Receiver) -> None:
        self.app = app
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        marking = scope["type"] == "http" and "/checkout/" in scope["path"] and scope["method"] == "POST"
        if marking:
            self.receiver.checkout_in_progress = True
        try:
            await self.app(scope, receive, send)
        finally:
            if marking:
                self.receiver.checkout_in_progress = False


EnvFactory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env() -> AsyncIterator[EnvFactory]:
    opened: list[Env] = []

    async def make(**sandbox_options: Any) -> Env:
        receiver = Receiver()
        app = FastAPI()

        @app.post(WEBHOOK_PATH)
        async def receive_webhook(request: Request) -> Response:
            receiver.attempts += 1
            receiver.overlapped_checkout |= receiver.checkout_in_progress
            if receiver.hold is not None:
                await receiver.hold.wait()
            if receiver.failures_left:
                receiver.failures_left -= 1
                return Response(status_code=500)
            receiver.deliveries.append((await request.body(), request.headers.get("x-paystack-signature")))
            return Response('{"status":"ok"}', media_type="application/json")

        app.add_middleware(_MarkCheckout, receiver=receiver)
        transport = httpx.ASGITransport(app)
        options: dict[str, Any] = {
            "settle_delay": 0.01,
            "webhook_retry_delays": (0.01, 0.02),
            "webhook_transport": transport,
            **sandbox_options,
        }
        sandbox = Sandbox(secret_key=SECRET, public_base_url=BASE, webhook_url=f"{BASE}{WEBHOOK_PATH}", **options)
        sandbox.serve_from(app)
        client = httpx.AsyncClient(transport=transport, base_url=BASE, headers={"Authorization": f"Bearer {SECRET}"})
        env = Env(client, sandbox, receiver, transport)
        opened.append(env)
        return env

    yield make
    for env in opened:
        await env.client.aclose()
        await env.sandbox.aclose()


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    return await make_env()


# --- helpers ---------------------------------------------------------------------------------------


def sample_data(name: str) -> Any:
    """The `data` of one of Paystack's documented bodies (tests/fixtures/paystack)."""
    return paystack_sample(name)["data"]


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] is False
    assert isinstance(body["message"], str)
    assert body["type"] in {"api_error", "validation_error", "processor_error"}
    assert isinstance(body["code"], str)
    assert isinstance(body["meta"]["nextStep"], str)
    if message is not None:
        assert body["message"] == message
    return body


async def initialize(env: Env, **overrides: Any) -> dict[str, Any]:
    body = {"email": "ada@example.com", "amount": 500000, **overrides}
    response = await env.client.post(f"{API}/transaction/initialize", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] is True
    return response.json()["data"]


async def verify(env: Env, reference: str) -> dict[str, Any]:
    response = await env.client.get(f"{API}/transaction/verify/{reference}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def checkout(env: Env, authorization_url: str, outcome: str) -> httpx.Response:
    return await env.client.post(authorization_url, data={"outcome": outcome})


async def paid_charge(env: Env, **overrides: Any) -> str:
    data = await initialize(env, **overrides)
    assert (await checkout(env, data["authorization_url"], "success")).status_code == 200
    return data["reference"]


async def recipient(env: Env, account_number: str = "0123456789", bank_code: str = "057") -> str:
    body = {"type": "nuban", "name": "Ada", "account_number": account_number, "bank_code": bank_code}
    response = await env.client.post(f"{API}/transferrecipient", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]["recipient_code"]


def transfer_body(recipient_code: str, reference: str, amount: int = 250000) -> dict[str, Any]:
    return {
        "source": "balance",
        "amount": amount,
        "recipient": recipient_code,
        "reference": reference,
        "reason": "payout",
        "currency": "NGN",
    }


# --- auth and envelopes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sk_test_wrong", SECRET, f"Basic {SECRET}", f"Bearer {SECRET}é".encode()],
)
async def test_api_calls_need_the_secret_key(env: Env, authorization: str | bytes | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(transport=env.transport, base_url=BASE, headers=headers) as anonymous:
        response = await anonymous.get(f"{API}/bank")
    assert_error(response, 401, "Invalid key")


# --- initialize ------------------------------------------------------------------------------------


async def test_initialize_gives_a_checkout_url_and_refuses_a_reused_reference(env: Env) -> None:
    data = await initialize(env, reference="order-1.a=b", currency="NGN")
    assert data["reference"] == "order-1.a=b"
    assert data["authorization_url"] == f"{BASE}{MOUNT_PREFIX}/checkout/{data['access_code']}"
    tx = env.sandbox.transactions["order-1.a=b"]
    assert 2**31 < tx.id < 2**64  # past signed 32-bit, as Paystack ids are

    response = await env.client.post(
        f"{API}/transaction/initialize",
        json={"email": "ada@example.com", "amount": 500000, "reference": "order-1.a=b"},
    )
    body = assert_error(response, 400, "Duplicate Transaction Reference")
    assert body["type"] == "validation_error"

    other = await initialize(env)
    assert other["reference"] != data["reference"]
    assert env.sandbox.transactions[other["reference"]].id > tx.id


@pytest.mark.parametrize("reference", ["has space", "semi;colon", "slash/x", "ünïcode", "under_score", 42])
async def test_initialize_reference_is_letters_digits_dash_dot_equals(env: Env, reference: object) -> None:
    response = await env.client.post(
        f"{API}/transaction/initialize",
        json={"email": "ada@example.com", "amount": 500000, "reference": reference},
    )
    assert assert_error(response, 400)["type"] == "validation_error"
    assert not env.sandbox.transactions


@pytest.mark.parametrize(
    ("currency", "minimum"), [("NGN", 5000), ("GHS", 10), ("ZAR", 100), ("KES", 300), ("USD", 200)]
)
async def test_initialize_enforces_the_currency_minimum(env: Env, currency: str, minimum: int) -> None:
    response = await env.client.post(
        f"{API}/transaction/initialize",
        json={"email": "ada@example.com", "amount": minimum - 1, "currency": currency},
    )
    assert assert_error(response, 400)["type"] == "validation_error"
    data = await initialize(env, amount=minimum, currency=currency)
    assert (await verify(env, data["reference"]))["currency"] == currency


@pytest.mark.parametrize(
    "overrides",
    [
        {"email": "not-an-email"},
        {"email": None},
        {"amount": None},
        {"amount": 5000.5},
        {"amount": True},
        {"amount": "50.00"},
        {"currency": "EUR"},
        {"channels": ["card", "telepathy"]},
        {"metadata": [1, 2]},
        {"callback_url": "javascript:alert(1)"},
    ],
)
async def test_initialize_validates_fields(env: Env, overrides: dict[str, Any]) -> None:
    body = {"email": "ada@example.com", "amount": 500000, **overrides}
    response = await env.client.post(f"{API}/transaction/initialize", json=body)
    assert assert_error(response, 400)["type"] == "validation_error"


async def test_initialize_refuses_a_body_that_is_not_a_json_object(env: Env) -> None:
    response = await env.client.post(
        f"{API}/transaction/initialize", content=b"[1]", headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
    response = await env.client.post(
        f"{API}/transaction/initialize", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(response, 400)


# --- verify and checkout -------------------------------------------------------------------------


async def test_verify_unknown_reference(env: Env) -> None:
    response = await env.client.get(f"{API}/transaction/verify/nope")
    assert_error(response, 404, "Transaction reference not found")


async def test_checkout_success_settles_and_sends_a_signed_charge_success(env: Env) -> None:
    data = await initialize(env, amount="750000", channels=["bank", "card"])
    reference = data["reference"]
    pending = await verify(env, reference)
    assert pending["status"] == "ongoing"
    assert pending["amount"] == 750000
    assert pending["metadata"] == ""
    assert pending["paid_at"] is None
    assert pending["authorization"] == {}
    assert pending["customer"]["email"] == "ada@example.com"

    page = await env.client.get(data["authorization_url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for text in ("NGN 7,500.00", "ada@example.com", "bank, card"):
        assert text in page.text
    for outcome in ("success", "failed", "abandoned"):
        assert f'name="outcome" value="{outcome}"' in page.text

    result = await checkout(env, data["authorization_url"], "success")
    assert result.status_code == 200
    assert "Payment successful" in result.text

    paid = await verify(env, reference)
    assert paid["status"] == "success"
    assert paid["gateway_response"] == "Successful"
    assert paid["paid_at"] is not None
    assert paid["channel"] == "bank"
    assert paid["fees"] == 750000 * 15 // 1000 + 10000
    assert paid["authorization"]["authorization_code"].startswith("AUTH_")
    assert paid["authorization"]["last4"] == "4081"

    await env.sandbox.wait_idle()
    [(body, signature)] = env.receiver.deliveries
    assert signature == sign(body, SECRET)
    assert verify_signature(body, signature, SECRET)
    event = json.loads(body)
    assert event["event"] == "charge.success"
    assert event["data"] == paid
    assert not env.receiver.overlapped_checkout


async def test_charge_success_webhook_keeps_metadata_and_exact_bytes(env: Env) -> None:
    metadata = {"payment_id": "pay_1", "note": "naïra ₦"}
    await paid_charge(env, metadata=metadata)
    await env.sandbox.wait_idle()
    [(body, signature)] = env.receiver.deliveries
    assert "₦".encode() in body  # raw UTF-8: a receiver that re-serialises would not match
    assert verify_signature(body, signature, SECRET)
    assert json.loads(body)["data"]["metadata"] == metadata


@pytest.mark.parametrize("outcome", ["failed", "abandoned"])
async def test_failed_and_abandoned_charges_send_no_webhook(env: Env, outcome: str) -> None:
    data = await initialize(env)
    result = await checkout(env, data["authorization_url"], outcome)
    assert result.status_code == 200
    tx = await verify(env, data["reference"])
    assert tx["status"] == outcome
    assert tx["authorization"] == {}
    await env.sandbox.wait_idle()
    assert env.receiver.attempts == 0


@pytest.mark.parametrize("first", ["failed", "abandoned"])
async def test_a_declined_or_abandoned_checkout_can_be_tried_again(env: Env, first: str) -> None:
    data = await initialize(env)
    assert (await checkout(env, data["authorization_url"], first)).status_code == 200
    assert (await verify(env, data["reference"]))["status"] == first
    assert 'value="success"' in (await env.client.get(data["authorization_url"])).text
    assert (await checkout(env, data["authorization_url"], "success")).status_code == 200
    assert (await verify(env, data["reference"]))["status"] == "success"


async def test_a_successful_checkout_ends_it(env: Env) -> None:
    data = await initialize(env)
    assert (await checkout(env, data["authorization_url"], "success")).status_code == 200
    again = await checkout(env, data["authorization_url"], "failed")
    assert again.status_code == 409
    assert (await verify(env, data["reference"]))["status"] == "success"
    page = await env.client.get(data["authorization_url"])
    assert 'value="success"' not in page.text


async def test_checkout_refuses_unknown_codes_and_outcomes(env: Env) -> None:
    data = await initialize(env)
    assert (await checkout(env, data["authorization_url"], "maybe")).status_code == 400
    assert (await env.client.get(f"{API}/checkout/nope")).status_code == 404
    assert (await env.client.post(f"{API}/checkout/nope", data={"outcome": "success"})).status_code == 404
    assert (await verify(env, data["reference"]))["status"] == "ongoing"


async def test_checkout_redirects_to_the_callback_url(env: Env) -> None:
    data = await initialize(env, reference="cb-1", callback_url="https://shop.example/done?step=2")
    result = await checkout(env, data["authorization_url"], "success")
    assert result.status_code == 303
    assert result.headers["location"] == "https://shop.example/done?step=2&trxref=cb-1&reference=cb-1"
    await env.sandbox.wait_idle()
    assert env.receiver.event_names() == ["charge.success"]


async def test_settle_charge_from_python(env: Env) -> None:
    data = await initialize(env)
    env.sandbox.settle_charge(data["reference"], "success", send_webhook=False)
    assert (await verify(env, data["reference"]))["status"] == "success"
    with pytest.raises(ValueError):
        env.sandbox.settle_charge(data["reference"], "failed")
    with pytest.raises(KeyError):
        env.sandbox.settle_charge("nope", "success")
    await env.sandbox.wait_idle()
    assert env.receiver.attempts == 0


# --- the shapes of Paystack's documented bodies ------------------------------------------------------


async def test_verify_answers_with_the_keys_of_paystacks_sample(env: Env) -> None:
    reference = await paid_charge(env)
    paid = await verify(env, reference)
    sample = paystack_sample("transaction_verify_success")["data"]
    assert set(paid) == set(sample)
    for key in ("id", "status", "reference", "amount", "requested_amount", "currency", "fees", "paid_at",
                "channel", "gateway_response", "authorization", "customer"):
        assert type(paid[key]) is type(sample[key]), key
    assert paid["requested_amount"] == paid["amount"] == 500000  # fees are not passed on by default

    await env.sandbox.wait_idle()
    [event] = env.receiver.events()
    recorded = paystack_sample("webhook_charge_success_recorded")
    assert event["event"] == recorded["event"]
    assert set(recorded["data"]) <= set(event["data"])


async def test_fees_passed_on_to_customers_are_added_to_what_they_pay(env: Env) -> None:
    plain = httpx.AsyncClient(transport=env.transport, base_url=BASE)
    async with plain:
        assert_error(await plain.post(f"{API}/_control/integration", json={"customer_pays_fees": "yes"}), 400)
        turned_on = await plain.post(f"{API}/_control/integration", json={"customer_pays_fees": True})
        assert turned_on.status_code == 200, turned_on.text
        assert turned_on.json()["data"]["customer_pays_fees"] is True
        assert env.sandbox.customer_pays_fees

        reference = await paid_charge(env, amount=30050)
        paid = await verify(env, reference)
        # NGN pricing: 1.5% (no flat NGN 100 below NGN 2,500)
        assert (paid["requested_amount"], paid["fees"], paid["amount"]) == (30050, 451, 30501)
        await env.sandbox.wait_idle()
        assert env.receiver.events()[0]["data"]["amount"] == 30501

        await plain.post(f"{API}/_control/integration", json={"customer_pays_fees": False})
        later = await verify(env, await paid_charge(env, amount=30050))
        assert (later["requested_amount"], later["fees"], later["amount"]) == (30050, 451, 30050)


@pytest.mark.parametrize(("resolution", "status_after"),
                         [("auto-accepted", "reversed"), ("merchant-accepted", "reversed"), ("declined", "success")])
async def test_dispute_webhooks_have_the_shape_of_paystacks_samples(
    env: Env, resolution: Literal["merchant-accepted", "auto-accepted", "declined"], status_after: str
) -> None:
    reference = await paid_charge(env)
    await env.sandbox.wait_idle()
    await env.sandbox.open_dispute(reference)
    await env.sandbox.resolve_dispute(reference, resolution=resolution)

    created, resolved = env.receiver.events()[1:]
    for event, name in ((created, "webhook_charge_dispute_create"), (resolved, "webhook_charge_dispute_resolve")):
        sample = paystack_sample(name)
        assert event["event"] == sample["event"]
        assert set(event["data"]) == set(sample["data"])
        assert set(sample["data"]["transaction"]) <= set(event["data"]["transaction"])
        assert event["data"]["transaction_reference"] is None
        assert event["data"]["transaction"]["reference"] == reference
        assert event["data"]["refund_amount"] == 500000
    assert (created["data"]["status"], created["data"]["resolution"]) == ("awaiting-merchant-feedback", None)
    assert created["data"]["transaction"]["status"] == "success"
    assert (resolved["data"]["status"], resolved["data"]["resolution"]) == ("resolved", resolution)
    assert resolved["data"]["transaction"]["status"] == status_after
    assert (await verify(env, reference))["status"] == status_after


# --- refunds ---------------------------------------------------------------------------------------


async def test_full_refund_settles_and_sends_refund_processed(env: Env) -> None:
    reference = await paid_charge(env)
    response = await env.client.post(f"{API}/refund", json={"transaction": reference, "merchant_note": "rfd_1 x"})
    assert response.status_code == 200, response.text
    refund = response.json()["data"]
    assert refund["status"] == "pending"
    assert refund["amount"] == 500000
    assert refund["transaction"]["reference"] == reference
    assert refund["merchant_note"] == "rfd_1 x"

    await env.sandbox.wait_idle()
    fetched = (await env.client.get(f"{API}/refund/{refund['id']}")).json()["data"]
    assert (fetched["status"], fetched["id"], fetched["merchant_note"]) == ("processed", refund["id"], "rfd_1 x")
    assert fetched["transaction"] == env.sandbox.transactions[reference].id  # an id here, as Paystack's fetch
    assert env.receiver.event_names() == ["charge.success", "refund.processed"]
    # Paystack's refund.processed: no refund id, the amount as a string
    event = env.receiver.events()[1]["data"]
    assert set(event) == set(sample_data("webhook_refund_processed"))
    assert "id" not in event
    assert event["transaction_reference"] == reference
    assert event["amount"] == "500000"
    assert event["refund_reference"]

    again = await env.client.post(f"{API}/refund", json={"transaction": reference, "amount": 100})
    assert_error(again, 400, "Transaction has been fully reversed")


async def test_refund_answers_have_paystacks_shapes(env: Env) -> None:
    reference = await paid_charge(env)
    created = (await env.client.post(f"{API}/refund", json={"transaction": reference})).json()["data"]
    await env.sandbox.wait_idle()
    fetched = (await env.client.get(f"{API}/refund/{created['id']}")).json()["data"]
    listed = (await env.client.get(f"{API}/refund", params={"transaction": reference})).json()["data"]

    assert set(created) == set(sample_data("refund_create"))
    assert set(fetched) == set(sample_data("refund_fetch"))
    assert [set(item) for item in listed] == [set(sample_data("refund_list")[0])]


async def test_refund_list_filters_by_charge_and_time_and_pages(env: Env) -> None:
    first, second = await paid_charge(env), await paid_charge(env)
    for amount in (100000, 150000):
        await env.client.post(f"{API}/refund", json={"transaction": first, "amount": amount})
    await env.client.post(f"{API}/refund", json={"transaction": second, "amount": 50000, "merchant_note": "mine"})
    first_id = env.sandbox.transactions[first].id

    async def listing(**params: Any) -> dict[str, Any]:
        response = await env.client.get(f"{API}/refund", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    by_id = await listing(transaction=first_id)
    assert [item["amount"] for item in by_id["data"]] == [150000, 100000]  # newest first
    assert {item["transaction"] for item in by_id["data"]} == {first_id}
    assert by_id["meta"]["total"] == 2
    by_reference = await listing(transaction=first)
    assert by_reference["data"] == by_id["data"]
    # the filter's older documented name
    assert (await listing(reference=first))["data"] == by_id["data"]
    [other] = (await listing(transaction=second))["data"]
    assert (other["amount"], other["merchant_note"]) == (50000, "mine")
    assert (await listing(transaction="nobody"))["data"] == []
    assert len((await listing())["data"]) == 3

    paged = await listing(transaction=first, perPage=1, page=2)
    assert [item["amount"] for item in paged["data"]] == [100000]
    assert paged["meta"] == {"total": 2, "skipped": 1, "perPage": 1, "page": 2, "pageCount": 2}
    assert (await listing(transaction=first, **{"from": "2999-01-01"}))["data"] == []
    assert len((await listing(transaction=first, to="2999-01-01T00:00:00.000Z"))["data"]) == 2
    assert (await listing(transaction=first, to="2000-01-01"))["data"] == []
    for bad in ({"perPage": "0"}, {"perPage": "101"}, {"page": "x"}, {"from": "yesterday"}):
        assert_error(await env.client.get(f"{API}/refund", params=bad), 400)


async def test_refund_failed_and_needs_attention_webhooks_have_paystacks_shapes(env: Env) -> None:
    reference = await paid_charge(env)
    env.sandbox.faults.refund_outcome_next("failed")
    env.sandbox.faults.refund_outcome_next("needs-attention")
    await env.client.post(f"{API}/refund", json={"transaction": reference, "amount": 100000})
    await env.sandbox.wait_idle()
    needing = (await env.client.post(f"{API}/refund", json={"transaction": reference, "amount": 200000})).json()
    await env.sandbox.wait_idle()

    assert env.receiver.event_names() == ["charge.success", "refund.failed", "refund.needs-attention"]
    failed, attention = (event["data"] for event in env.receiver.events()[1:])
    assert set(failed) == set(sample_data("webhook_refund_failed"))
    assert (failed["amount"], failed["status"]) == (100000, "failed")
    assert failed["refund_reference"].startswith("TRF_")
    assert set(attention) == set(sample_data("webhook_refund_needs_attention"))
    assert (attention["id"], attention["amount"]) == (str(needing["data"]["id"]), 200000)
    # a refund that needs attention still holds its amount; a failed one gave it back
    assert env.sandbox.transactions[reference].refunded == 200000
    assert env.sandbox.refunds[needing["data"]["id"]].status == "needs-attention"


async def test_partial_refunds_up_to_the_amount_paid(env: Env) -> None:
    reference = await paid_charge(env)
    tx_id = env.sandbox.transactions[reference].id
    first = await env.client.post(f"{API}/refund", json={"transaction": reference, "amount": 200000})
    assert first.json()["data"]["amount"] == 200000
    over = await env.client.post(f"{API}/refund", json={"transaction": reference, "amount": 300001})
    assert_error(over, 400)
    # By transaction id, and without an amount: whatever is left.
    rest = await env.client.post(f"{API}/refund", json={"transaction": tx_id, "currency": "NGN"})
    assert rest.json()["data"]["amount"] == 300000
    assert sorted(refund.amount for refund in env.sandbox.refunds.values()) == [200000, 300000]


async def test_refund_needs_a_successful_charge(env: Env) -> None:
    data = await initialize(env)
    pending = await env.client.post(f"{API}/refund", json={"transaction": data["reference"]})
    assert_error(pending, 400)
    unknown = await env.client.post(f"{API}/refund", json={"transaction": "nope"})
    assert_error(unknown, 404)
    assert_error(await env.client.get(f"{API}/refund/999"), 404)


async def test_refund_outcome_fault_fails_the_refund_and_frees_the_amount(env: Env) -> None:
    reference = await paid_charge(env)
    env.sandbox.faults.refund_outcome_next("failed")
    response = await env.client.post(f"{API}/refund", json={"transaction": reference})
    refund_id = response.json()["data"]["id"]
    await env.sandbox.wait_idle()
    assert env.sandbox.refunds[refund_id].status == "failed"
    assert env.receiver.event_names() == ["charge.success", "refund.failed"]
    retry = await env.client.post(f"{API}/refund", json={"transaction": reference})
    assert retry.status_code == 200
    await env.sandbox.wait_idle()
    assert env.receiver.event_names()[-1] == "refund.processed"


# --- recipients, banks ---------------------------------------------------------------------------


async def test_transfer_recipient_is_registered_once_per_account(env: Env) -> None:
    first = await recipient(env)
    assert first.startswith("RCP_")
    assert await recipient(env) == first
    assert await recipient(env, account_number="9876543210") != first
    details = env.sandbox.recipients[first].api_data()["details"]
    assert details["bank_code"] == "057"
    assert details["bank_name"] == "Zenith Bank"
    assert details["account_number"] == "0123456789"


@pytest.mark.parametrize(
    "overrides",
    [
        {"bank_code": "999"},
        {"account_number": "12345"},
        {"type": "card"},
        {"currency": "GHS"},
        {"name": None},
    ],
)
async def test_transfer_recipient_validation(env: Env, overrides: dict[str, Any]) -> None:
    body = {"type": "nuban", "name": "Ada", "account_number": "0123456789", "bank_code": "057", **overrides}
    assert_error(await env.client.post(f"{API}/transferrecipient", json=body), 400)


async def test_bank_list(env: Env) -> None:
    response = await env.client.get(f"{API}/bank", params={"currency": "NGN"})
    banks = {bank["code"]: bank for bank in response.json()["data"]}
    assert banks["057"]["name"] == "Zenith Bank"
    assert {"044", "058", "011"} <= set(banks)
    assert all(bank["currency"] == "NGN" for bank in banks.values())
    for currency in ("GHS", "ZAR", "KES"):
        listed = (await env.client.get(f"{API}/bank", params={"currency": currency})).json()["data"]
        assert listed
        assert all(bank["currency"] == currency for bank in listed)


async def test_resolve_account(env: Env) -> None:
    params = {"account_number": "0123456789", "bank_code": "057"}
    first = await env.client.get(f"{API}/bank/resolve", params=params)
    assert first.status_code == 200
    name = first.json()["data"]["account_name"]
    assert name
    again = await env.client.get(f"{API}/bank/resolve", params=params)
    assert again.json()["data"]["account_name"] == name
    other_bank = await env.client.get(f"{API}/bank/resolve", params={**params, "bank_code": "058"})
    assert other_bank.json()["data"]["account_name"] == name

    for bad in ({**params, "account_number": "012345678"}, {**params, "bank_code": "999"}, {}):
        response = await env.client.get(f"{API}/bank/resolve", params=bad)
        assert_error(response, 422, "Could not resolve account name. Check parameters or try again.")


async def test_the_failing_test_account_never_resolves_or_registers_at_any_bank(env: Env) -> None:
    """0000000000 is Paystack's documented account that does not resolve."""
    for bank in BANKS:
        resolved = await env.client.get(f"{API}/bank/resolve",
                                        params={"account_number": "0000000000", "bank_code": bank.code})
        assert_error(resolved, 422, "Could not resolve account name. Check parameters or try again.")
        body = {"type": bank.type, "name": "Ada", "account_number": "0000000000", "bank_code": bank.code,
                "currency": bank.currency}
        refused = await env.client.post(f"{API}/transferrecipient", json=body)
        assert assert_error(refused, 400)["code"] == "invalid_account", bank
        body["account_number"] = "0000000001"
        assert (await env.client.post(f"{API}/transferrecipient", json=body)).status_code == 201, bank
    assert len(env.sandbox.recipients) == len(BANKS)


# --- transfers -------------------------------------------------------------------------------------


async def test_transfer_settles_by_itself_and_sends_transfer_success(env: Env) -> None:
    code = await recipient(env)
    reference = "payout-0001-abcdef"
    response = await env.client.post(f"{API}/transfer", json=transfer_body(code, reference))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "pending"
    assert data["transfer_code"].startswith("TRF_")
    assert data["reference"] == reference
    assert (await env.client.get(f"{API}/transfer/verify/{reference}")).json()["data"]["status"] == "pending"

    await env.sandbox.wait_idle()
    verified = (await env.client.get(f"{API}/transfer/verify/{reference}")).json()["data"]
    assert verified["status"] == "success"
    [event] = env.receiver.events()
    assert event["event"] == "transfer.success"
    assert event["data"]["reference"] == reference
    assert event["data"]["transfer_code"] == data["transfer_code"]
    assert event["data"]["amount"] == 250000
    assert event["data"]["recipient"]["recipient_code"] == code


@pytest.mark.parametrize(
    "reference",
    ["short-ref", "UPPERCASE-reference-1", "has.dot.in-reference", "x" * 51, "spaces in the reference"],
)
async def test_transfer_reference_rule(env: Env, reference: str) -> None:
    code = await recipient(env)
    response = await env.client.post(f"{API}/transfer", json=transfer_body(code, reference))
    assert_error(response, 400)
    assert not env.sandbox.transfers


async def test_transfer_refuses_a_reused_reference_and_unknown_recipients(env: Env) -> None:
    code = await recipient(env)
    body = transfer_body(code, "payout-0002-abcdef")
    assert (await env.client.post(f"{API}/transfer", json=body)).status_code == 200
    duplicate = await env.client.post(f"{API}/transfer", json=body)
    assert assert_error(duplicate, 400)["code"] == "duplicate_reference"
    unknown = await env.client.post(f"{API}/transfer", json=transfer_body("RCP_nope", "payout-0003-abcdef"))
    assert_error(unknown, 400)
    assert_error(await env.client.get(f"{API}/transfer/verify/payout-9999-abcdef"), 404)
    assert list(env.sandbox.transfers) == ["payout-0002-abcdef"]
    assert [t.reference for t in env.sandbox.transfer_history] == ["payout-0002-abcdef"]  # refusals make none


async def test_transfer_reversed_after_success(env: Env) -> None:
    code = await recipient(env)
    env.sandbox.faults.transfer_outcome_next("reversed_after_success")
    reference = "payout-0006-abcdef"
    await env.client.post(f"{API}/transfer", json=transfer_body(code, reference))
    await env.sandbox.wait_idle()

    success, reversal = env.receiver.events()
    assert (success["event"], success["data"]["status"]) == ("transfer.success", "success")
    assert (reversal["event"], reversal["data"]["status"]) == ("transfer.reversed", "reversed")
    # as Paystack's own reversal body: transferred_at stays set, and it is the same transfer
    assert reversal["data"]["transferred_at"] == success["data"]["transferred_at"] is not None
    assert reversal["data"]["transfer_code"] == success["data"]["transfer_code"]
    verified = (await env.client.get(f"{API}/transfer/verify/{reference}")).json()["data"]
    assert (verified["status"], verified["transferred_at"]) == ("reversed", success["data"]["transferred_at"])
    # a reversed transfer may be retried under its reference: a transfer of its own, the first one kept
    assert (await env.client.post(f"{API}/transfer", json=transfer_body(code, reference))).status_code == 200
    first, retried = env.sandbox.transfer_history
    assert (first.reference, first.status) == (reference, "reversed")
    assert (retried.reference, retried.status) == (reference, "pending")
    assert retried.id != first.id and env.sandbox.transfers[reference] is retried


async def test_reverse_a_successful_transfer_by_hand(env: Env) -> None:
    code = await recipient(env)
    await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-0008-abcdef"))
    await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-0009-abcdef"))
    with pytest.raises(ValueError):  # still pending
        await env.sandbox.reverse_transfer("payout-0008-abcdef")
    await env.sandbox.wait_idle()

    await env.sandbox.reverse_transfer("payout-0008-abcdef")
    await env.sandbox.reverse_transfer("payout-0009-abcdef", send_webhook=False)
    assert [e["event"] for e in env.receiver.events()] == ["transfer.success", "transfer.success", "transfer.reversed"]
    assert env.receiver.events()[-1]["data"]["reference"] == "payout-0008-abcdef"
    assert env.sandbox.transfers["payout-0009-abcdef"].status == "reversed"
    with pytest.raises(ValueError):
        await env.sandbox.reverse_transfer("payout-0008-abcdef")
    with pytest.raises(KeyError):
        await env.sandbox.reverse_transfer("payout-9999-abcdef")


async def test_reverse_a_transfer_through_the_control_route(env: Env) -> None:
    code = await recipient(env)
    await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-0010-abcdef"))
    await env.sandbox.wait_idle()
    plain = httpx.AsyncClient(transport=env.transport, base_url=BASE)
    async with plain:
        route = f"{API}/_control/transfers/payout-0010-abcdef"
        assert_error(await plain.post(route, json={"action": "explode"}), 400)
        reversed_ = await plain.post(route, json={"action": "reverse"})
        assert reversed_.status_code == 200, reversed_.text
        assert reversed_.json()["data"]["status"] == "reversed"
        assert_error(await plain.post(route, json={"action": "reverse"}), 409)
        assert_error(await plain.post(f"{API}/_control/transfers/nope", json={"action": "reverse"}), 404)
    await env.sandbox.wait_idle()
    assert env.receiver.event_names() == ["transfer.success", "transfer.reversed"]


async def test_transfer_bodies_have_paystacks_shapes(env: Env) -> None:
    code = await recipient(env)
    reference = "payout-0011-abcdef"
    initiated = (await env.client.post(f"{API}/transfer", json=transfer_body(code, reference))).json()["data"]
    await env.sandbox.wait_idle()
    verified = (await env.client.get(f"{API}/transfer/verify/{reference}")).json()["data"]
    [webhook] = env.receiver.events()

    # what the sandbox does not emulate: Paystack's internal request ids and its transfer fees
    not_emulated = {"request", "transfersessionid", "transfertrials", "fee_charged", "fees_breakdown"}
    assert set(paystack_sample("transfer_initiate_success")["data"]) - not_emulated <= set(initiated)
    assert isinstance(initiated["recipient"], int)
    assert set(paystack_sample("transfer_verify")["data"]) - not_emulated <= set(verified)
    assert set(paystack_sample("transfer_verify")["data"]["recipient"]) <= set(verified["recipient"])
    real = paystack_sample("webhook_transfer_success")
    assert set(real["data"]) - not_emulated <= set(webhook["data"])
    # webhooks carry the integration as an object, verify as its id
    assert set(webhook["data"]["integration"]) >= {"id", "is_live", "business_name"}
    assert verified["integration"] == webhook["data"]["integration"]["id"]
    recipient_sample = paystack_sample("transferrecipient_create_nuban")["data"]
    assert set(recipient_sample) <= set(env.sandbox.recipients[code].api_data())
    assert set(recipient_sample["details"]) == set(env.sandbox.recipients[code].api_data()["details"])


@pytest.mark.parametrize("outcome", ["failed", "reversed"])
async def test_transfer_outcome_fault(env: Env, outcome: Literal["failed", "reversed"]) -> None:
    code = await recipient(env)
    env.sandbox.faults.transfer_outcome_next(outcome)
    await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-0004-abcdef"))
    await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-0005-abcdef"))
    await env.sandbox.wait_idle()
    assert env.sandbox.transfers["payout-0004-abcdef"].status == outcome
    assert env.sandbox.transfers["payout-0005-abcdef"].status == "success"
    by_reference = {event["data"]["reference"]: event for event in env.receiver.events()}
    assert by_reference["payout-0004-abcdef"]["event"] == f"transfer.{outcome}"
    assert by_reference["payout-0004-abcdef"]["data"]["status"] == outcome
    assert by_reference["payout-0005-abcdef"]["event"] == "transfer.success"


async def test_bulk_transfer(env: Env) -> None:
    code = await recipient(env)
    env.sandbox.faults.transfer_outcome_next("failed")
    items = [
        {"amount": 10000, "reference": "bulk-item-0001-abc", "reason": "a", "recipient": code},
        {"amount": 20000, "reference": "bulk-item-0002-abc", "reason": "b", "recipient": code},
    ]
    response = await env.client.post(
        f"{API}/transfer/bulk", json={"currency": "NGN", "source": "balance", "transfers": items}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert all(set(item) == set(paystack_sample("transfer_bulk")["data"][0]) for item in data)
    assert [item["reference"] for item in data] == ["bulk-item-0001-abc", "bulk-item-0002-abc"]
    for item, sent in zip(data, items, strict=True):
        assert item["recipient"] == code
        assert item["amount"] == sent["amount"]
        assert item["currency"] == "NGN"
        assert item["transfer_code"].startswith("TRF_")
        assert item["status"] in {"pending", "received"}

    await env.sandbox.wait_idle()
    assert env.sandbox.transfers["bulk-item-0001-abc"].status == "failed"
    assert env.sandbox.transfers["bulk-item-0002-abc"].status == "success"
    assert sorted(env.receiver.event_names()) == ["transfer.failed", "transfer.success"]


async def test_bulk_transfer_is_all_or_nothing(env: Env) -> None:
    code = await recipient(env)
    items = [
        {"amount": 10000, "reference": "bulk-item-0003-abc", "recipient": code},
        {"amount": 10000, "reference": "BAD", "recipient": code},
    ]
    response = await env.client.post(f"{API}/transfer/bulk", json={"source": "balance", "transfers": items})
    assert assert_error(response, 400)["message"].startswith("transfers[1]:")
    twice = [items[0], items[0]]
    response = await env.client.post(f"{API}/transfer/bulk", json={"source": "balance", "transfers": twice})
    assert_error(response, 400)
    assert not env.sandbox.transfers


async def test_transfers_wait_for_their_otp_while_transfer_otp_is_on(env: Env) -> None:
    code = await recipient(env)
    env.sandbox.transfer_otp = True
    held = await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-otp-0001-abc"))
    assert held.status_code == 200, held.text
    assert held.json()["message"] == "Transfer requires OTP to continue"
    data = held.json()["data"]
    assert set(paystack_sample("transfer_initiate_otp")["data"]) <= set(data)
    assert data["status"] == "otp"
    await env.sandbox.wait_idle()
    assert env.sandbox.transfers["payout-otp-0001-abc"].status == "otp"  # it does not settle by itself
    assert env.receiver.events() == []

    # bulk transfers need OTP off
    items = [{"amount": 10000, "reference": "bulk-otp-0001-abc", "recipient": code}]
    refused = await env.client.post(f"{API}/transfer/bulk", json={"source": "balance", "transfers": items})
    assert "OTP" in assert_error(refused, 400)["message"]

    finalize = f"{API}/transfer/finalize_transfer"
    transfer_code = data["transfer_code"]
    assert_error(await env.client.post(finalize, json={"transfer_code": transfer_code, "otp": "654321"}), 400)
    assert_error(await env.client.post(finalize, json={"transfer_code": "TRF_nobody", "otp": "123456"}), 404)
    resend = f"{API}/transfer/resend_otp"
    assert_error(await env.client.post(resend, json={"transfer_code": transfer_code, "reason": "why"}), 400)
    resent = await env.client.post(resend, json={"transfer_code": transfer_code, "reason": "transfer"})
    assert resent.json() == paystack_sample("transfer_resend_otp")
    assert env.sandbox.otp_resends == {transfer_code: 1}

    done = await env.client.post(finalize, json={"transfer_code": transfer_code, "otp": "123456"})
    assert done.status_code == 200, done.text
    assert set(paystack_sample("transfer_finalize")["data"]) <= set(done.json()["data"])
    assert done.json()["data"]["status"] == "pending"
    assert_error(await env.client.post(finalize, json={"transfer_code": transfer_code, "otp": "123456"}), 400)
    await env.sandbox.wait_idle()
    assert env.sandbox.transfers["payout-otp-0001-abc"].status == "success"
    assert env.receiver.event_names() == ["transfer.success"]


async def test_the_balance_is_shown_and_drawn_on(env: Env) -> None:
    code = await recipient(env)
    control = f"{API}/_control/integration"
    assert_error(await env.client.post(control, json={"balances": {"XYZ": 1}}), 400)
    assert_error(await env.client.post(control, json={"balances": {"NGN": -1}}), 400)
    assert (await env.client.post(control, json={"balances": {"NGN": 300000}})).status_code == 200
    shown = (await env.client.get(f"{API}/balance")).json()
    assert shown["status"] is True
    [ngn] = [item for item in shown["data"] if item["currency"] == "NGN"]
    assert set(ngn) == set(paystack_sample("balance")["data"][0]) and ngn["balance"] == 300000

    env.sandbox.faults.transfer_outcome_next("failed")
    first = await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-bal-0001-abc"))
    assert first.status_code == 200, first.text
    assert env.sandbox.balances["NGN"] == 300000 - 250000
    short = await env.client.post(f"{API}/transfer", json=transfer_body(code, "payout-bal-0002-abc"))
    assert "balance" in assert_error(short, 400)["message"]
    await env.sandbox.wait_idle()  # the first failed: its money comes back
    assert env.sandbox.balances["NGN"] == 300000


# --- faults ----------------------------------------------------------------------------------------


async def test_fail_next_answers_an_error_envelope_then_recovers(env: Env) -> None:
    env.sandbox.faults.fail_next(2, status=500)
    for _ in range(2):
        failed = await env.client.post(
            f"{API}/transaction/initialize", json={"email": "ada@example.com", "amount": 500000}
        )
        assert assert_error(failed, 500)["type"] == "api_error"
    assert not env.sandbox.transactions
    await initialize(env)


async def test_fail_next_only_hits_matching_paths(env: Env) -> None:
    env.sandbox.faults.fail_next(status=503, path_contains="/refund")
    reference = await paid_charge(env)
    assert_error(await env.client.post(f"{API}/refund", json={"transaction": reference}), 503)
    assert not env.sandbox.refunds
    assert (await env.client.post(f"{API}/refund", json={"transaction": reference})).status_code == 200


async def test_fail_next_with_429_carries_the_reset_header(env: Env) -> None:
    env.sandbox.faults.fail_next(status=429)
    response = await env.client.get(f"{API}/bank")
    assert_error(response, 429)
    assert response.headers["x-ratelimit-reset"] == "1"


async def test_timeout_next_processes_the_call_but_withholds_the_answer(env: Env) -> None:
    code = await recipient(env)
    env.sandbox.faults.timeout_next(path_contains="/transfer", delay=5.0)
    reference = "payout-0007-abcdef"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(env.client.post(f"{API}/transfer", json=transfer_body(code, reference)), timeout=0.1)
    assert reference in env.sandbox.transfers
    # It still settles and announces itself, as Paystack would.
    await env.sandbox.wait_idle()
    assert env.sandbox.transfers[reference].status == "success"
    assert env.receiver.event_names() == ["transfer.success"]
    # The fault is used up: the client's follow-up answers at once.
    verified = await env.client.get(f"{API}/transfer/verify/{reference}")
    assert verified.json()["data"]["status"] == "success"


@pytest.mark.parametrize("fault", ["error_after_next", "malformed_next"])
async def test_a_refund_that_is_made_then_answered_badly(env: Env, fault: str) -> None:
    reference = await paid_charge(env)
    getattr(env.sandbox.faults, fault)(path_contains="/refund")
    response = await env.client.post(f"{API}/refund", json={"transaction": reference, "merchant_note": "rfd_2"})
    if fault == "error_after_next":
        assert assert_error(response, 500)["type"] == "api_error"
    else:
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
    # The refund was made all the same, and it shows in the list and settles as Paystack's would.
    [refund] = env.sandbox.refunds.values()
    [listed] = (await env.client.get(f"{API}/refund", params={"transaction": reference})).json()["data"]
    assert (listed["id"], listed["merchant_note"]) == (refund.id, "rfd_2")
    await env.sandbox.wait_idle()
    assert refund.status == "processed"
    assert env.receiver.event_names() == ["charge.success", "refund.processed"]


async def test_error_after_next_takes_only_server_errors(env: Env) -> None:
    with pytest.raises(ValueError):
        env.sandbox.faults.error_after_next(status=400)
    with pytest.raises(ValueError):
        env.sandbox.faults.malformed_next(0)
    env.sandbox.faults.error_after_next(status=503)
    assert_error(await env.client.get(f"{API}/bank"), 503)


async def test_timeout_next_answers_after_the_delay(env: Env) -> None:
    env.sandbox.faults.timeout_next(delay=0.05)
    response = await asyncio.wait_for(env.client.get(f"{API}/bank"), timeout=2)
    assert response.status_code == 200


async def test_faults_clear(env: Env) -> None:
    faults = env.sandbox.faults
    faults.fail_next(5)
    faults.transfer_outcome_next("failed", 3)
    faults.refund_outcome_next("failed")
    faults.clear()
    await initialize(env)
    with pytest.raises(ValueError):
        faults.fail_next(0)
    with pytest.raises(ValueError):
        faults.fail_next(status=200)


# --- webhook delivery ----------------------------------------------------------------------------


async def test_webhook_is_retried_until_accepted(env: Env) -> None:
    env.receiver.failures_left = 2
    await paid_charge(env)
    await env.sandbox.wait_idle()
    assert env.receiver.attempts == 3
    [(body, signature)] = env.receiver.deliveries
    assert verify_signature(body, signature, SECRET)


async def test_webhook_delivery_gives_up_after_the_schedule(env: Env) -> None:
    env.receiver.failures_left = 10
    await paid_charge(env)
    await env.sandbox.wait_idle()
    assert env.receiver.attempts == 3  # the first try and one per retry delay
    assert not env.receiver.deliveries


async def test_webhook_to_an_unreachable_receiver_is_retried(make_env: EnvFactory) -> None:
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("connection refused", request=request)

    env = await make_env(webhook_transport=httpx.MockTransport(refuse), webhook_retry_delays=(0.01,))
    await paid_charge(env)
    await env.sandbox.wait_idle()
    assert attempts == 2


async def test_wait_idle_does_not_wait_for_distant_retries(make_env: EnvFactory) -> None:
    env = await make_env(webhook_retry_delays=(60,))
    env.receiver.failures_left = 1
    await paid_charge(env)
    await asyncio.wait_for(env.sandbox.wait_idle(timeout=0.2), timeout=1)
    assert env.receiver.attempts == 1


async def test_wait_idle_raises_when_due_work_does_not_finish(env: Env) -> None:
    env.receiver.hold = asyncio.Event()
    await paid_charge(env)
    with pytest.raises(TimeoutError):
        await env.sandbox.wait_idle(timeout=0.05)
    env.receiver.hold.set()
    await env.sandbox.wait_idle()
    assert env.receiver.event_names() == ["charge.success"]


# --- disputes and control routes -------------------------------------------------------------------


async def test_disputes_send_create_and_resolve(env: Env) -> None:
    reference = await paid_charge(env)
    await env.sandbox.wait_idle()
    await env.sandbox.open_dispute(reference, amount=100000)
    with pytest.raises(ValueError):
        await env.sandbox.open_dispute(reference)
    await env.sandbox.resolve_dispute(reference, resolution="merchant-accepted")
    names = env.receiver.event_names()
    assert names == ["charge.success", "charge.dispute.create", "charge.dispute.resolve"]
    created, resolved = env.receiver.events()[1:]
    assert created["data"]["refund_amount"] == 100000
    assert created["data"]["transaction"]["reference"] == reference
    assert created["data"]["status"] == "awaiting-merchant-feedback"
    assert resolved["data"]["id"] == created["data"]["id"]
    assert resolved["data"]["status"] == "resolved"
    assert resolved["data"]["resolution"] == "merchant-accepted"


async def test_disputes_need_a_successful_charge(env: Env) -> None:
    data = await initialize(env)
    with pytest.raises(ValueError):
        await env.sandbox.open_dispute(data["reference"])
    with pytest.raises(KeyError):
        await env.sandbox.open_dispute("nope")
    with pytest.raises(ValueError):
        await env.sandbox.resolve_dispute(data["reference"], resolution="declined")


async def test_control_routes(env: Env) -> None:
    plain = httpx.AsyncClient(transport=env.transport, base_url=BASE)
    async with plain:
        set_fault = await plain.post(f"{API}/_control/faults", json={"action": "fail_next", "count": 1, "status": 503})
        assert set_fault.status_code == 200, set_fault.text
        assert_error(await env.client.get(f"{API}/bank"), 503)
        bad = await plain.post(f"{API}/_control/faults", json={"action": "explode"})
        assert_error(bad, 400)
        for action in ({"action": "error_after_next", "status": 502}, {"action": "malformed_next"}):
            set_fault = await plain.post(f"{API}/_control/faults", json={**action, "path_contains": "/bank"})
            assert set_fault.status_code == 200, set_fault.text
        assert_error(await env.client.get(f"{API}/bank"), 502)
        assert (await env.client.get(f"{API}/bank")).content.startswith(b'{"status":true')
        assert (await env.client.get(f"{API}/bank")).json()["status"] is True
        refused = await plain.post(f"{API}/_control/faults", json={"action": "error_after_next", "status": 404})
        assert_error(refused, 400)
        bad_outcome = await plain.post(
            f"{API}/_control/faults", json={"action": "transfer_outcome_next", "outcome": "maybe"}
        )
        assert_error(bad_outcome, 400)

        data = await initialize(env)
        reference = data["reference"]
        settled = await plain.post(f"{API}/_control/charges/{reference}", json={"outcome": "success"})
        assert settled.json()["data"]["status"] == "success"
        twice = await plain.post(f"{API}/_control/charges/{reference}", json={"outcome": "success"})
        assert_error(twice, 409)
        assert_error(await plain.post(f"{API}/_control/charges/nope", json={"outcome": "success"}), 404)

        opened = await plain.post(f"{API}/_control/disputes/{reference}", json={"action": "open"})
        assert opened.status_code == 200, opened.text
        unknown = await plain.post(
            f"{API}/_control/disputes/{reference}", json={"action": "resolve", "resolution": "auto-declined"}
        )
        assert_error(unknown, 400)
        resolved = await plain.post(
            f"{API}/_control/disputes/{reference}", json={"action": "resolve", "resolution": "auto-accepted"}
        )
        assert resolved.json()["data"]["resolution"] == "auto-accepted"
        assert resolved.json()["data"]["transaction"]["status"] == "reversed"

    await env.sandbox.wait_idle()
    assert env.receiver.event_names() == ["charge.success", "charge.dispute.create", "charge.dispute.resolve"]
