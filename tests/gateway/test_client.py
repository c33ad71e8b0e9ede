from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app import wiring
from app.core.config import Settings
from app.gateway.client import PaystackClient
from app.gateway.errors import (
    GatewayError,
    GatewayNotReached,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from app.gateway.types import (
    TRANSFER_CONCLUSIVE_FAILURES,
    TRANSFER_IN_PROGRESS,
    Balance,
    Bank,
    BulkTransferItem,
    InitializeResult,
    RefundPage,
    RefundResult,
    ResolvedAccount,
    TransferRecipient,
    TransferResult,
)
from app.runtime import build_runtime
from tests.helpers import paystack_sample

BASE_URL = "https://api.paystack.test"
SECRET = "sk_test_0123456789abcdef"
MAX_RETRIES = 2
BACKOFF_BASE = 0.01


def ok(data: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": True, "message": "OK", "data": data, **extra})


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def verify_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": 4099260516,
        "status": "success",
        "reference": "ref-123",
        "amount": 500000,
        "currency": "NGN",
        "paid_at": "2024-03-01T10:15:30.000Z",
        "channel": "card",
        "gateway_response": "Successful",
        "fees": 7500,
        "metadata": {"investment_id": "inv_1"},
        "authorization": {"authorization_code": "AUTH_secret", "last4": "4081"},
        "customer": {"email": "ada@example.com"},
    }
    data.update(overrides)
    return data


def transfer_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reference": "payout_0001_abcdefgh",
        "transfer_code": "TRF_1ptvuv321ahaa7q",
        "status": "pending",
        "amount": 250000,
        "currency": "NGN",
        "recipient": 28191,
        "id": 37283,
    }
    data.update(overrides)
    return data


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def client(sleeps: list[float]) -> AsyncIterator[PaystackClient]:
    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    paystack = PaystackClient(
        base_url=BASE_URL,
        secret_key=SECRET,
        timeout=1.0,
        max_retries=MAX_RETRIES,
        backoff_base=BACKOFF_BASE,
        max_rate_limit_wait=10.0,
    )
    paystack._sleep = fake_sleep
    async with paystack:
        yield paystack


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(using="httpx", base_url=BASE_URL, assert_all_called=False) as router:
        yield router


def assert_authorized(request: httpx.Request) -> None:
    assert request.headers["authorization"] == f"Bearer {SECRET}"


# Success cases, one per call


async def test_initialize_transaction(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transaction/initialize").mock(
        return_value=ok(
            {
                "authorization_url": "https://checkout.paystack.com/abc",
                "access_code": "abc",
                "reference": "ref-123",
            }
        )
    )

    result = await client.initialize_transaction(
        email="ada@example.com",
        amount=500000,
        currency="NGN",
        reference="ref-123",
        callback_url="https://app.example.com/return",
        metadata={"investment_id": "inv_1"},
        channels=["card", "bank_transfer"],
    )

    assert result == InitializeResult(
        authorization_url="https://checkout.paystack.com/abc", access_code="abc", reference="ref-123"
    )
    request = route.calls.last.request
    assert request.method == "POST"
    assert_authorized(request)
    assert body_of(request) == {
        "email": "ada@example.com",
        "amount": 500000,
        "currency": "NGN",
        "reference": "ref-123",
        "callback_url": "https://app.example.com/return",
        "metadata": {"investment_id": "inv_1"},
        "channels": ["card", "bank_transfer"],
    }


async def test_initialize_omits_unset_optional_fields(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transaction/initialize").mock(
        return_value=ok({"authorization_url": "https://x", "access_code": "a", "reference": "r1"})
    )

    await client.initialize_transaction(email="a@b.co", amount=10000, currency="GHS", reference="r1")

    assert body_of(route.calls.last.request) == {
        "email": "a@b.co",
        "amount": 10000,
        "currency": "GHS",
        "reference": "r1",
    }


async def test_verify_transaction(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.get("/transaction/verify/ref-123").mock(return_value=ok(verify_data()))

    result = await client.verify_transaction("ref-123")

    request = route.calls.last.request
    assert request.method == "GET"
    assert_authorized(request)
    assert result.id == 4099260516
    assert result.status == "success"
    assert result.is_success
    assert result.reference == "ref-123"
    assert result.amount == 500000
    assert result.currency == "NGN"
    assert result.paid_at == datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC)
    assert result.channel == "card"
    assert result.gateway_response == "Successful"
    assert result.fees == 7500
    assert result.metadata == {"investment_id": "inv_1"}
    assert result.authorization_code == "AUTH_secret"
    assert "AUTH_secret" not in repr(result)
    assert result.customer_email == "ada@example.com"
    assert result.matches(500000, "NGN")
    assert result.matches(500000, "ngn")


async def test_verify_quotes_the_reference_into_one_path_segment(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    route = api.get(url__regex=r".*/transaction/verify/.*").mock(return_value=ok(verify_data()))

    await client.verify_transaction("a/../b?x=1")

    assert route.calls.last.request.url.raw_path == b"/transaction/verify/a%2F..%2Fb%3Fx%3D1"


async def test_a_cookie_an_answer_sets_is_not_sent_with_a_later_call(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    answer = ok(verify_data())
    answer.headers["set-cookie"] = "__cf_bm=tracker; Path=/; Secure"
    route = api.get("/transaction/verify/ref-123").mock(return_value=answer)

    await client.verify_transaction("ref-123")
    await client.verify_transaction("ref-123")

    assert route.call_count == 2
    assert "cookie" not in route.calls.last.request.headers
    assert_authorized(route.calls.last.request)


async def test_verify_refuses_dot_segments(client: PaystackClient) -> None:
    with pytest.raises(ValueError):
        await client.verify_transaction("..")


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(499999, "NGN"), (500001, "NGN"), (500000, "GHS"), (500000, "USD")],
)
async def test_verify_mismatch_does_not_match(
    client: PaystackClient, api: respx.MockRouter, amount: int, currency: str
) -> None:
    api.get("/transaction/verify/ref-123").mock(
        return_value=ok(verify_data(amount=amount, currency=currency))
    )

    result = await client.verify_transaction("ref-123")

    assert result.is_success
    assert not result.matches(500000, "NGN")


@pytest.mark.parametrize("metadata", ["", None])
async def test_verify_normalises_empty_metadata(
    client: PaystackClient, api: respx.MockRouter, metadata: object
) -> None:
    api.get("/transaction/verify/ref-123").mock(return_value=ok(verify_data(metadata=metadata)))

    result = await client.verify_transaction("ref-123")

    assert result.metadata == {}


async def test_verify_decodes_metadata_sent_as_json_string(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/transaction/verify/ref-123").mock(
        return_value=ok(verify_data(metadata='{"investment_id": "inv_1"}'))
    )

    result = await client.verify_transaction("ref-123")

    assert result.metadata == {"investment_id": "inv_1"}


async def test_verify_abandoned_is_not_success(client: PaystackClient, api: respx.MockRouter) -> None:
    api.get("/transaction/verify/ref-123").mock(
        return_value=ok(
            verify_data(status="abandoned", paid_at=None, fees=None, authorization={}, gateway_response=None)
        )
    )

    result = await client.verify_transaction("ref-123")

    assert not result.is_success
    assert not result.matches(500000, "NGN")
    assert result.paid_at is None
    assert result.authorization_code is None


# Paystack's documented bodies (tests/fixtures/paystack), parsed by the call that receives them


async def test_initialize_parses_paystacks_sample(client: PaystackClient, api: respx.MockRouter) -> None:
    sample = paystack_sample("transaction_initialize")
    api.post("/transaction/initialize").mock(return_value=httpx.Response(200, json=sample))

    result = await client.initialize_transaction(email="demo@test.com", amount=30050, currency="NGN",
                                                 reference="re4lyvq3s3")

    assert result == InitializeResult(**sample["data"])


def _verify_samples() -> dict[str, dict[str, Any]]:
    """Every documented body whose data (or part) has the shape of verify's data."""
    failed_items = paystack_sample("transaction_list_failed_items")["data"]
    return {
        "verify_success": paystack_sample("transaction_verify_success")["data"],
        "verify_abandoned": paystack_sample("transaction_verify_abandoned")["data"],
        "verify_abandoned_ghs": paystack_sample("transaction_verify_abandoned_ghs")["data"],
        "list_failed_item_test": failed_items[0],
        "list_failed_item_live": failed_items[1],
        # charge.success's data has verify's shape; the service verifies before it credits
        "charge_success": paystack_sample("webhook_charge_success")["data"],
        "charge_success_recorded": paystack_sample("webhook_charge_success_recorded")["data"],
        # a chargeback's disputed charge
        "dispute_create_transaction": paystack_sample("webhook_charge_dispute_create")["data"]["transaction"],
        "dispute_resolve_transaction": paystack_sample("webhook_charge_dispute_resolve")["data"]["transaction"],
    }


@pytest.mark.parametrize("name", list(_verify_samples()))
async def test_verify_parses_paystacks_samples(client: PaystackClient, api: respx.MockRouter, name: str) -> None:
    data = _verify_samples()[name]
    api.get(f"/transaction/verify/{data['reference']}").mock(
        return_value=httpx.Response(200, json={"status": True, "message": "Verification successful", "data": data})
    )

    result = await client.verify_transaction(data["reference"])

    assert (result.id, result.status, result.reference) == (data["id"], data["status"], data["reference"])
    assert (result.amount, result.currency) == (data["amount"], data["currency"])
    assert result.fees == data.get("fees")
    assert result.requested_amount == data.get("requested_amount")
    assert result.asked_amount == data.get("requested_amount", data["amount"])
    assert result.channel == data["channel"]
    assert result.gateway_response == data["gateway_response"]
    assert result.paid_at == (None if data["paid_at"] is None else datetime.fromisoformat(data["paid_at"]))
    assert result.metadata == (data["metadata"] if isinstance(data["metadata"], dict) else {})
    assert result.authorization_code == (data["authorization"] or {}).get("authorization_code")
    assert result.customer_email == data["customer"].get("email")
    assert result.is_success == (data["status"] == "success")


async def test_verify_sample_with_fees_passed_on_matches_the_amount_asked(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    """`amount` 40333 = `requested_amount` 30050 + `fees` 10283: the customer paid the fees."""
    data = paystack_sample("transaction_verify_success")["data"]
    api.get("/transaction/verify/re4lyvq3s3").mock(return_value=ok(data))

    result = await client.verify_transaction("re4lyvq3s3")

    assert (result.amount, result.requested_amount, result.fees) == (40333, 30050, 10283)
    assert result.asked_amount == 30050
    assert result.matches(30050, "NGN")
    assert not result.matches(40333, "NGN")
    assert not result.matches(30050, "GHS")


@pytest.mark.parametrize(
    ("requested_amount", "amount", "fees"),
    [(30049, 40333, 10283), (30050, 40332, 10283), (30050, 40333, None), (30050, 30049, 0)],
    ids=["requested-differs", "charged-not-requested-plus-fees", "fees-unknown", "charged-less"],
)
async def test_verify_with_requested_amount_still_refuses_mismatches(
    client: PaystackClient, api: respx.MockRouter, requested_amount: int, amount: int, fees: int | None
) -> None:
    api.get("/transaction/verify/ref-123").mock(
        return_value=ok(verify_data(requested_amount=requested_amount, amount=amount, fees=fees))
    )

    result = await client.verify_transaction("ref-123")

    assert not result.matches(30050, "NGN")


@pytest.mark.parametrize("metadata", [0, 1.5, True, [1, 2], "not json", "[1, 2]", '"text"'])
async def test_verify_reads_metadata_that_is_not_an_object_as_empty(
    client: PaystackClient, api: respx.MockRouter, metadata: object
) -> None:
    """Paystack's own charge.success sample carries `metadata: 0`; the charge must not fail over it."""
    api.get("/transaction/verify/ref-123").mock(return_value=ok(verify_data(metadata=metadata)))

    result = await client.verify_transaction("ref-123")

    assert result.metadata == {}
    assert result.matches(500000, "NGN")


async def test_create_refund(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/refund").mock(
        return_value=ok(
            {
                "id": 3018284,
                "status": "pending",
                "amount": 20000,
                "currency": "NGN",
                "deducted_amount": 0,
                "merchant_note": "rfd_1 duplicate",
                "transaction": {"id": 4099260516, "reference": "ref-123", "amount": 500000},
            }
        )
    )

    result = await client.create_refund(
        transaction="ref-123", amount=20000, currency="NGN", merchant_note="rfd_1 duplicate"
    )

    assert result == RefundResult(
        id=3018284, status="pending", amount=20000, currency="NGN", transaction_reference="ref-123",
        transaction_id=4099260516, merchant_note="rfd_1 duplicate",
    )
    request = route.calls.last.request
    assert request.method == "POST"
    assert_authorized(request)
    assert body_of(request) == {
        "transaction": "ref-123",
        "amount": 20000,
        "currency": "NGN",
        "merchant_note": "rfd_1 duplicate",
    }


async def test_create_refund_parses_paystacks_documented_answer(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.post("/refund").mock(return_value=httpx.Response(200, json=paystack_sample("refund_create")))

    result = await client.create_refund(transaction="T685312322670591")

    assert result == RefundResult(
        id=3018284, status="pending", amount=10000, currency="NGN", transaction_reference="T685312322670591",
        transaction_id=1004723697, merchant_note="Refund for transaction T685312322670591 by test@me.com",
        created_at=datetime(2021, 12, 7, 9, 21, 17, 122000, tzinfo=UTC),
    )


async def test_fetch_refund(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.get("/refund/3018284").mock(
        return_value=ok(
            {
                "id": 3018284,
                "status": "processed",
                "amount": 20000,
                "currency": "NGN",
                "transaction": 4099260516,
                "transaction_reference": "ref-123",
            }
        )
    )

    result = await client.fetch_refund(3018284)

    assert result == RefundResult(
        id=3018284, status="processed", amount=20000, currency="NGN", transaction_reference="ref-123",
        transaction_id=4099260516,
    )
    assert route.calls.last.request.method == "GET"
    assert_authorized(route.calls.last.request)


async def test_fetch_refund_parses_paystacks_documented_answer(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/refund/1").mock(return_value=httpx.Response(200, json=paystack_sample("refund_fetch")))

    result = await client.fetch_refund(1)

    # the transaction is only its id here, and no reference comes with it
    assert result == RefundResult(
        id=1, status="processed", amount=500000, currency="NGN", transaction_reference=None, transaction_id=1641,
        merchant_note="xxx", created_at=datetime(2017, 9, 24, 21, 10, 59, tzinfo=UTC),
    )


async def test_list_refunds_parses_paystacks_documented_answer(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    route = api.get("/refund").mock(return_value=httpx.Response(200, json=paystack_sample("refund_list")))

    page = await client.list_refunds(
        transaction=1641, since=datetime(2017, 9, 1, 8, 30, tzinfo=UTC), until=datetime(2017, 10, 1, tzinfo=UTC),
    )

    assert page == RefundPage(
        items=[
            RefundResult(id=1, status="processed", amount=500000, currency="NGN", transaction_reference=None,
                         transaction_id=1641, merchant_note="xxx",
                         created_at=datetime(2017, 9, 24, 21, 10, 59, tzinfo=UTC)),
            RefundResult(id=2, status="pending", amount=500000, currency="NGN", transaction_reference=None,
                         transaction_id=323896, merchant_note="xxx",
                         created_at=datetime(2017, 9, 24, 21, 11, 53, tzinfo=UTC)),
        ],
        page=1,
        has_more=False,  # no meta, and fewer items than a page holds
    )
    request = route.calls.last.request
    assert_authorized(request)
    assert dict(request.url.params) == {
        "transaction": "1641", "page": "1", "perPage": "100",
        "from": "2017-09-01T08:30:00.000Z", "to": "2017-10-01T00:00:00.000Z",
    }


async def test_list_refunds_pages_by_meta(client: PaystackClient, api: respx.MockRouter) -> None:
    item = paystack_sample("refund_list")["data"][0]
    route = api.get("/refund").mock(
        side_effect=[
            ok([item], meta={"total": 2, "skipped": 0, "perPage": 1, "page": 1, "pageCount": 2}),
            ok([{**item, "id": 7}], meta={"total": 2, "skipped": 1, "perPage": 1, "page": 2, "pageCount": 2}),
        ]
    )

    first = await client.list_refunds(transaction="ref-123", page=1, per_page=1)
    second = await client.list_refunds(transaction="ref-123", page=2, per_page=1)

    assert (first.has_more, [r.id for r in first.items]) == (True, [1])
    assert (second.has_more, [r.id for r in second.items]) == (False, [7])
    assert [dict(call.request.url.params)["page"] for call in route.calls] == ["1", "2"]
    assert "from" not in route.calls.last.request.url.params


async def test_list_refunds_off_contract_item_is_a_protocol_error(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    item = paystack_sample("refund_list")["data"][0]
    api.get("/refund").mock(return_value=ok([{**item, "merchant_note": 12}]))

    with pytest.raises(GatewayProtocolError):
        await client.list_refunds(transaction="ref-123")


async def test_create_transfer_recipient(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transferrecipient").mock(
        return_value=ok(
            {
                "recipient_code": "RCP_t0ya41mp35flk40",
                "name": "Tolu Robert",
                "type": "nuban",
                "currency": "NGN",
                "details": {"account_number": "0001234567", "bank_code": "058", "bank_name": "GTBank"},
            }
        )
    )

    result = await client.create_transfer_recipient(
        name="Tolu Robert", account_number="0001234567", bank_code="058", currency="NGN"
    )

    assert result == TransferRecipient(
        recipient_code="RCP_t0ya41mp35flk40", name="Tolu Robert", bank_code="058", account_last4="4567"
    )
    request = route.calls.last.request
    assert request.method == "POST"
    assert_authorized(request)
    assert body_of(request) == {
        "type": "nuban",
        "name": "Tolu Robert",
        "account_number": "0001234567",
        "bank_code": "058",
        "currency": "NGN",
    }


async def test_initiate_transfer(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transfer").mock(return_value=ok(transfer_data()))

    result = await client.initiate_transfer(
        amount=250000,
        recipient="RCP_t0ya41mp35flk40",
        reference="payout_0001_abcdefgh",
        reason="Revenue share",
        currency="NGN",
    )

    assert result == TransferResult(
        reference="payout_0001_abcdefgh",
        transfer_code="TRF_1ptvuv321ahaa7q",
        status="pending",
        amount=250000,
        currency="NGN",
    )
    assert result.is_in_progress
    request = route.calls.last.request
    assert request.method == "POST"
    assert_authorized(request)
    assert body_of(request) == {
        "source": "balance",
        "amount": 250000,
        "recipient": "RCP_t0ya41mp35flk40",
        "reference": "payout_0001_abcdefgh",
        "reason": "Revenue share",
        "currency": "NGN",
    }


async def test_verify_transfer(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.get("/transfer/verify/payout_0001_abcdefgh").mock(
        return_value=ok(transfer_data(status="success", recipient={"recipient_code": "RCP_x"}))
    )

    result = await client.verify_transfer("payout_0001_abcdefgh")

    assert result.is_success
    assert not result.is_conclusive_failure
    assert not result.is_in_progress
    assert route.calls.last.request.method == "GET"
    assert_authorized(route.calls.last.request)


@pytest.mark.parametrize(
    ("status", "success", "failure", "in_progress"),
    [
        ("success", True, False, False),
        *[(status, False, True, False) for status in sorted(TRANSFER_CONCLUSIVE_FAILURES)],
        *[(status, False, False, True) for status in sorted(TRANSFER_IN_PROGRESS)],
    ],
)
def test_transfer_status_classification(status: str, success: bool, failure: bool, in_progress: bool) -> None:
    result = TransferResult(reference="r", transfer_code=None, status=status, amount=1, currency="NGN")

    assert (result.is_success, result.is_conclusive_failure, result.is_in_progress) == (
        success,
        failure,
        in_progress,
    )


async def test_bulk_transfer(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transfer/bulk").mock(
        return_value=ok(
            [
                transfer_data(reference="payout_0001_aaaaaaaa", transfer_code="TRF_a", amount=1000),
                transfer_data(reference="payout_0002_bbbbbbbb", transfer_code="TRF_b", amount=2000),
            ]
        )
    )

    results = await client.bulk_transfer(
        currency="NGN",
        transfers=[
            BulkTransferItem(amount=1000, reference="payout_0001_aaaaaaaa", recipient="RCP_a", reason="one"),
            BulkTransferItem(amount=2000, reference="payout_0002_bbbbbbbb", recipient="RCP_b", reason="two"),
        ],
    )

    assert [(r.reference, r.transfer_code, r.amount, r.status) for r in results] == [
        ("payout_0001_aaaaaaaa", "TRF_a", 1000, "pending"),
        ("payout_0002_bbbbbbbb", "TRF_b", 2000, "pending"),
    ]
    request = route.calls.last.request
    assert request.method == "POST"
    assert_authorized(request)
    assert body_of(request) == {
        "currency": "NGN",
        "source": "balance",
        "transfers": [
            {"amount": 1000, "reference": "payout_0001_aaaaaaaa", "reason": "one", "recipient": "RCP_a"},
            {"amount": 2000, "reference": "payout_0002_bbbbbbbb", "reason": "two", "recipient": "RCP_b"},
        ],
    }


async def test_list_banks_follows_the_cursor(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.get("/bank").mock(
        side_effect=[
            ok([{"name": "Access Bank", "code": "044", "currency": "NGN"}], meta={"next": "cursor-2"}),
            ok([{"name": "GTBank", "code": "058", "currency": "NGN"}], meta={"next": None}),
        ]
    )

    banks = await client.list_banks("NGN")

    assert banks == [
        Bank(name="Access Bank", code="044", currency="NGN"),
        Bank(name="GTBank", code="058", currency="NGN"),
    ]
    first, second = (call.request for call in route.calls)
    assert_authorized(first)
    assert dict(first.url.params) == {"currency": "NGN", "perPage": "100", "use_cursor": "true"}
    assert dict(second.url.params) == {
        "currency": "NGN",
        "perPage": "100",
        "use_cursor": "true",
        "next": "cursor-2",
    }


async def test_resolve_account(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.get("/bank/resolve").mock(
        return_value=ok({"account_number": "0001234567", "account_name": "TOLU ROBERT", "bank_id": 9})
    )

    result = await client.resolve_account(account_number="0001234567", bank_code="058")

    assert result == ResolvedAccount(account_number="0001234567", account_name="TOLU ROBERT", bank_id=9)
    request = route.calls.last.request
    assert request.method == "GET"
    assert_authorized(request)
    assert dict(request.url.params) == {"account_number": "0001234567", "bank_code": "058"}


async def test_base_url_with_a_path_prefix(sleeps: list[float]) -> None:
    base = "https://sandbox.test/sandbox/paystack"
    with respx.mock(using="httpx", base_url=base, assert_all_called=False) as router:
        route = router.get("/transaction/verify/ref-123").mock(return_value=ok(verify_data()))
        async with PaystackClient(base_url=base, secret_key=SECRET) as paystack:
            await paystack.verify_transaction("ref-123")

    assert route.calls.last.request.url.path == "/sandbox/paystack/transaction/verify/ref-123"


# Network failures and retries


@pytest.mark.parametrize("exception", [httpx.ReadTimeout, httpx.WriteTimeout])
async def test_timeout_is_retried_then_raises_gateway_timeout(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], exception: type[Exception]
) -> None:
    route = api.get("/transaction/verify/ref-123").mock(side_effect=exception)

    with pytest.raises(GatewayTimeout):
        await client.verify_transaction("ref-123")

    assert route.call_count == MAX_RETRIES + 1
    assert len(sleeps) == MAX_RETRIES
    for attempt, delay in enumerate(sleeps):
        assert BACKOFF_BASE * 2**attempt <= delay <= BACKOFF_BASE * 2**attempt * 1.1


async def test_timeout_on_initiate_transfer_is_retried(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transfer").mock(side_effect=[httpx.ReadTimeout("slow"), ok(transfer_data())])

    result = await client.initiate_transfer(
        amount=250000, recipient="RCP_x", reference="payout_0001_abcdefgh", reason="r", currency="NGN"
    )

    assert result.transfer_code == "TRF_1ptvuv321ahaa7q"
    assert route.call_count == 2
    assert body_of(route.calls[0].request) == body_of(route.calls[1].request)


@pytest.mark.parametrize("exception", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_no_connection_exhausts_retries_as_not_reached(
    client: PaystackClient, api: respx.MockRouter, exception: type[Exception]
) -> None:
    route = api.get("/bank/resolve").mock(side_effect=exception)

    with pytest.raises(GatewayNotReached) as caught:
        await client.resolve_account(account_number="0001234567", bank_code="058")

    assert isinstance(caught.value, GatewayUnavailable) and not isinstance(caught.value, GatewayTimeout)
    assert route.call_count == MAX_RETRIES + 1


@pytest.mark.parametrize("exception", [httpx.ConnectError, httpx.ConnectTimeout])
async def test_no_connection_on_create_refund_is_not_retried_and_says_so(
    client: PaystackClient, api: respx.MockRouter, exception: type[Exception]
) -> None:
    route = api.post("/refund").mock(side_effect=exception)

    with pytest.raises(GatewayNotReached):
        await client.create_refund(transaction="ref-123")

    assert route.call_count == 1


async def test_overall_deadline_covers_transports_that_ignore_httpx_timeouts() -> None:
    calls = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def no_sleep(delay: float) -> None:
        return None

    paystack = PaystackClient(
        base_url=BASE_URL, secret_key=SECRET, timeout=0.05, max_retries=1, transport=httpx.MockTransport(hang)
    )
    paystack._sleep = no_sleep
    async with paystack:
        with pytest.raises(GatewayTimeout):
            await paystack.verify_transaction("ref-123")

    assert calls == 2


@pytest.mark.parametrize("status_code", [500, 502, 503])
async def test_5xx_then_success_is_retried_for_safe_calls(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], status_code: int
) -> None:
    route = api.get("/transaction/verify/ref-123").mock(
        side_effect=[httpx.Response(status_code, text="upstream down"), ok(verify_data())]
    )

    result = await client.verify_transaction("ref-123")

    assert result.is_success
    assert route.call_count == 2
    assert len(sleeps) == 1


async def test_5xx_exhausted_raises_unavailable_with_paystack_message(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    route = api.post("/transaction/initialize").mock(
        return_value=httpx.Response(503, json={"status": False, "message": "Service unavailable"})
    )

    with pytest.raises(GatewayUnavailable) as caught:
        await client.initialize_transaction(email="a@b.co", amount=10000, currency="NGN", reference="r1")

    assert caught.value.message == "Service unavailable"
    assert caught.value.status_code == 503
    assert route.call_count == MAX_RETRIES + 1


async def test_5xx_on_create_refund_is_not_retried(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.post("/refund").mock(
        side_effect=[
            httpx.Response(500, json={"status": False, "message": "An error occurred"}),
            ok({"id": 1, "status": "pending", "amount": 1, "currency": "NGN"}),
        ]
    )

    with pytest.raises(GatewayUnavailable) as caught:
        await client.create_refund(transaction="ref-123")

    assert caught.value.message == "An error occurred"
    assert route.call_count == 1
    assert sleeps == []


async def test_timeout_on_create_refund_is_not_retried(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/refund").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(GatewayTimeout):
        await client.create_refund(transaction="ref-123")

    assert route.call_count == 1


async def test_stalled_create_refund_is_cut_at_the_deadline_and_not_retried(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    arrived: list[httpx.Request] = []

    async def stall(request: httpx.Request) -> httpx.Response:
        arrived.append(request)
        await asyncio.sleep(30)
        return ok({})

    api.post("/refund").mock(side_effect=stall)

    with pytest.raises(GatewayTimeout):
        await client.create_refund(transaction="ref-123")  # the client's timeout is 1 s

    assert len(arrived) == 1


async def test_malformed_answer_to_create_refund_is_a_protocol_error_not_retried(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.post("/refund").mock(
        side_effect=[
            httpx.Response(200, content=b'{"status":true,"data":{"transaction":',
                           headers={"content-type": "application/json"}),
            ok(paystack_sample("refund_create")["data"]),
        ]
    )

    with pytest.raises(GatewayProtocolError):
        await client.create_refund(transaction="ref-123")

    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, text="boom"), httpx.Response(503, json={"status": False, "message": "down"}),
     httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed")],
    ids=["500", "503", "timeout", "connection-dropped"],
)
async def test_a_get_is_retried_up_to_the_limit_with_exponential_backoff(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], failure: httpx.Response | Exception
) -> None:
    route = api.get("/transfer/verify/payout_0001_abcdefgh").mock(side_effect=[failure] * (MAX_RETRIES + 2))

    with pytest.raises(GatewayUnavailable):
        await client.verify_transfer("payout_0001_abcdefgh")

    assert route.call_count == MAX_RETRIES + 1
    assert len(sleeps) == MAX_RETRIES
    for attempt, delay in enumerate(sleeps):
        assert BACKOFF_BASE * 2**attempt <= delay <= BACKOFF_BASE * 2**attempt * 1.1


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, text="boom"), httpx.Response(502, text="<html>Bad Gateway</html>"),
     httpx.Response(503, json={"status": False, "message": "down"}), httpx.ReadTimeout("slow"),
     httpx.WriteTimeout("slow"), httpx.RemoteProtocolError("peer closed"), httpx.ConnectError("refused"),
     httpx.Response(400, json={"status": False, "message": "Transaction reference is invalid"}),
     httpx.Response(200, json={"status": True, "data": {"id": "7"}})],
    ids=["500", "502", "503", "read-timeout", "write-timeout", "connection-dropped", "not-reached", "refused",
         "off-contract"],
)
async def test_post_refund_is_never_sent_twice(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], failure: httpx.Response | Exception
) -> None:
    route = api.post("/refund").mock(
        side_effect=[failure, ok({"id": 7, "status": "pending", "amount": 100, "currency": "NGN"})]
    )

    with pytest.raises(GatewayError):
        await client.create_refund(transaction="ref-123", amount=100)

    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, text="boom"), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")],
    ids=["500", "timeout", "not-reached"],
)
async def test_post_transfer_is_retried_with_its_reference_up_to_the_limit(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], failure: httpx.Response | Exception
) -> None:
    route = api.post("/transfer").mock(side_effect=[failure] * (MAX_RETRIES + 2))

    with pytest.raises(GatewayUnavailable):
        await client.initiate_transfer(
            amount=250000, recipient="RCP_x", reference="payout_0001_abcdefgh", reason="r", currency="NGN"
        )

    assert route.call_count == MAX_RETRIES + 1
    assert {body_of(call.request)["reference"] for call in route.calls} == {"payout_0001_abcdefgh"}
    assert len(sleeps) == MAX_RETRIES


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(400, json={"status": False, "message": "Insufficient balance"}),
     httpx.Response(200, json={"status": True, "data": {"status": "pending", "amount": "250000"}})],
    ids=["refused", "off-contract"],
)
async def test_post_transfer_is_not_retried_after_an_answer(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], answer: httpx.Response
) -> None:
    route = api.post("/transfer").mock(side_effect=[answer, ok(transfer_data())])

    with pytest.raises(GatewayError):
        await client.initiate_transfer(
            amount=250000, recipient="RCP_x", reference="payout_0001_abcdefgh", reason="r", currency="NGN"
        )

    assert route.call_count == 1
    assert sleeps == []


async def test_the_retry_limit_comes_from_gateway_max_retries() -> None:
    calls = 0

    def unavailable(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="down")

    async def no_sleep(delay: float) -> None:
        return None

    settings = Settings(_env_file=None, payment_gateway_mode="test", paystack_base_url=BASE_URL,
                        jwt_secret="a-test-secret-that-is-long-enough-0123456789", gateway_max_retries=4,
                        database_url="sqlite+aiosqlite:///:memory:")
    runtime = build_runtime(settings, wiring.EXTENSIONS, gateway_transport=httpx.MockTransport(unavailable))
    runtime.gateway._sleep = no_sleep
    try:
        with pytest.raises(GatewayUnavailable):
            await runtime.gateway.verify_transaction("ref-123")
    finally:
        await runtime.gateway.aclose()
        await runtime.db.dispose()

    assert calls == 4 + 1


# Rate limits


@pytest.mark.parametrize("header", ["x-ratelimit-reset", "retry-after"])
async def test_429_wait_is_honoured(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], header: str
) -> None:
    route = api.get("/transaction/verify/ref-123").mock(
        side_effect=[
            httpx.Response(429, headers={header: "3"}, json={"status": False, "message": "Too many"}),
            ok(verify_data()),
        ]
    )

    result = await client.verify_transaction("ref-123")

    assert result.is_success
    assert sleeps == [3.0]
    assert route.call_count == 2


async def test_429_is_retried_even_for_create_refund(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.post("/refund").mock(
        side_effect=[
            httpx.Response(429, headers={"x-ratelimit-reset": "2"}),
            ok({"id": 7, "status": "pending", "amount": 100, "currency": "NGN", "transaction": 1}),
        ]
    )

    result = await client.create_refund(transaction="ref-123")

    assert result.id == 7
    assert sleeps == [2.0]
    assert route.call_count == 2


async def test_429_with_too_long_reset_raises_unavailable_with_retry_after(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.get("/transaction/verify/ref-123").mock(
        return_value=httpx.Response(
            429, headers={"x-ratelimit-reset": "60"}, json={"status": False, "message": "Rate limit exceeded"}
        )
    )

    with pytest.raises(GatewayUnavailable) as caught:
        await client.verify_transaction("ref-123")

    assert caught.value.retry_after == 60.0
    assert caught.value.status_code == 429
    assert caught.value.message == "Rate limit exceeded"
    assert route.call_count == 1
    assert sleeps == []


async def test_429_counts_as_an_attempt(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.get("/transaction/verify/ref-123").mock(
        return_value=httpx.Response(429, headers={"x-ratelimit-reset": "1"})
    )

    with pytest.raises(GatewayUnavailable) as caught:
        await client.verify_transaction("ref-123")

    assert caught.value.retry_after == 1.0
    assert route.call_count == MAX_RETRIES + 1
    assert sleeps == [1.0] * MAX_RETRIES


# Answers off the contract, and refusals


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"status": True, "message": "OK"}),
        httpx.Response(200, json={"message": "no status"}),
        ok(verify_data(amount="500000")),
        ok(verify_data(amount=True)),
        ok({k: v for k, v in verify_data().items() if k != "reference"}),
        ok(verify_data(paid_at="yesterday")),
        ok("not an object"),
    ],
    ids=[
        "malformed-json",
        "json-array",
        "no-data",
        "no-status",
        "amount-as-string",
        "amount-as-bool",
        "no-reference",
        "bad-timestamp",
        "data-not-object",
    ],
)
async def test_off_contract_answers_raise_protocol_error(
    client: PaystackClient, api: respx.MockRouter, response: httpx.Response
) -> None:
    route = api.get("/transaction/verify/ref-123").mock(return_value=response)

    with pytest.raises(GatewayProtocolError):
        await client.verify_transaction("ref-123")

    assert route.call_count == 1


async def test_initialize_without_access_code_raises_protocol_error(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.post("/transaction/initialize").mock(
        return_value=ok({"authorization_url": "https://x", "reference": "r"})
    )

    with pytest.raises(GatewayProtocolError):
        await client.initialize_transaction(email="a@b.co", amount=10000, currency="NGN", reference="r")


async def test_400_status_false_raises_rejected_with_message(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.post("/transaction/initialize").mock(
        return_value=httpx.Response(
            400,
            json={
                "status": False,
                "message": "Duplicate Transaction Reference",
                "type": "validation_error",
                "code": "duplicate_reference",
            },
        )
    )

    with pytest.raises(GatewayRejected) as caught:
        await client.initialize_transaction(email="a@b.co", amount=10000, currency="NGN", reference="r1")

    assert caught.value.message == "Duplicate Transaction Reference"
    assert str(caught.value) == "Duplicate Transaction Reference"
    assert caught.value.status_code == 400
    assert caught.value.gateway_code == "duplicate_reference"
    assert route.call_count == 1
    assert sleeps == []


async def test_200_status_false_raises_rejected(client: PaystackClient, api: respx.MockRouter) -> None:
    api.get("/bank/resolve").mock(
        return_value=httpx.Response(200, json={"status": False, "message": "Could not resolve account name"})
    )

    with pytest.raises(GatewayRejected) as caught:
        await client.resolve_account(account_number="0000000000", bank_code="058")

    assert caught.value.message == "Could not resolve account name"
    assert caught.value.status_code == 200


async def test_4xx_without_json_body_still_rejected(client: PaystackClient, api: respx.MockRouter) -> None:
    api.get("/refund/99").mock(return_value=httpx.Response(404, text="Not Found"))

    with pytest.raises(GatewayRejected) as caught:
        await client.fetch_refund(99)

    assert caught.value.status_code == 404
    assert "404" in caught.value.message


async def test_401_is_rejected_and_secret_not_in_message(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/transfer/verify/payout_0001_abcdefgh").mock(
        return_value=httpx.Response(401, json={"status": False, "message": "Invalid key"})
    )

    with pytest.raises(GatewayRejected) as caught:
        await client.verify_transfer("payout_0001_abcdefgh")

    assert caught.value.message == "Invalid key"
    assert SECRET not in str(caught.value.details())


def test_constructor_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError):
        PaystackClient(base_url=BASE_URL, secret_key="")


async def test_undecodable_body_raises_protocol_error(client: PaystackClient, api: respx.MockRouter) -> None:
    api.get("/transaction/verify/ref-123").mock(
        return_value=httpx.Response(
            200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )
    )

    with pytest.raises(GatewayProtocolError):
        await client.verify_transaction("ref-123")


# Paystack's own bodies (tests/fixtures/paystack), each read by the call that receives it


def sample(name: str, status_code: int = 200) -> httpx.Response:
    return httpx.Response(status_code, json=paystack_sample(name))


@pytest.mark.parametrize(
    ("name", "call", "expected"),
    [
        ("transferrecipient_create_nuban",
         {"name": "Tolu Robert", "account_number": "01000000010", "bank_code": "058", "currency": "NGN"},
         TransferRecipient("RCP_m7ljkv8leesep7p", "Tolu Robert", "058", "0010")),
        ("transferrecipient_create_nuban_guide",
         {"name": "John Doe", "account_number": "0001234567", "bank_code": "058", "currency": "NGN"},
         TransferRecipient("RCP_t0ya41mp35flk40", "John Doe", "058", "4567")),
        ("transferrecipient_create_mobile_money_ghs",
         {"name": "Abina Nana", "account_number": "0551234987", "bank_code": "MTN", "currency": "GHS",
          "type": "mobile_money"},
         TransferRecipient("RCP_u2tnoyjjvh95pzm", "Abina Nana", "MTN", "4987")),
        ("transferrecipient_create_mobile_money_business_kes",
         {"name": "Till Transfer Example", "account_number": "247247", "bank_code": "MPTILL", "currency": "KES",
          "type": "mobile_money_business"},
         TransferRecipient("RCP_5vl8b2yma7xdnjp", "Till Transfer Example", "MPTILL", "7247")),
    ],
)
async def test_paystack_transfer_recipient_bodies(
    client: PaystackClient, api: respx.MockRouter, name: str, call: dict[str, str], expected: TransferRecipient
) -> None:
    route = api.post("/transferrecipient").mock(return_value=sample(name, 201))

    assert await client.create_transfer_recipient(**call) == expected
    assert body_of(route.calls.last.request)["type"] == call.get("type", "nuban")


@pytest.mark.parametrize(
    ("name", "reference", "expected"),
    [
        ("transfer_initiate_success", "acv_9ee55786-2323-4760-98e2-6380c9cb3f68",
         TransferResult("acv_9ee55786-2323-4760-98e2-6380c9cb3f68", "TRF_v5tip3zx8nna9o78", "success", 100000, "NGN")),
        ("transfer_initiate_otp", "x8beye1xud",
         TransferResult("x8beye1xud", "TRF_1aqrqhoomp0rjro", "otp", 20000, "NGN")),
        # the older shape names no reference: the result carries the one we sent
        ("transfer_initiate_otp_legacy", "payout-0001-legacyshape",
         TransferResult("payout-0001-legacyshape", "TRF_1ptvuv321ahaa7q", "otp", 3794800, "NGN")),
    ],
)
async def test_paystack_initiate_transfer_bodies(
    client: PaystackClient, api: respx.MockRouter, name: str, reference: str, expected: TransferResult
) -> None:
    api.post("/transfer").mock(return_value=sample(name))

    result = await client.initiate_transfer(
        amount=expected.amount, recipient="RCP_x", reference=reference, reason="r", currency="NGN"
    )

    assert result == expected
    assert result.is_success == (expected.status == "success")
    assert result.is_in_progress == (expected.status == "otp")


async def test_an_initiate_answer_about_another_transfer_is_off_contract(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.post("/transfer").mock(return_value=sample("transfer_initiate_success"))

    with pytest.raises(GatewayProtocolError):
        await client.initiate_transfer(
            amount=100000, recipient="RCP_x", reference="payout-0001-someoneelse", reason="r", currency="NGN"
        )


async def test_paystack_verify_transfer_body(client: PaystackClient, api: respx.MockRouter) -> None:
    reference = "acv_9ee55786-2323-4760-98e2-6380c9cb3f67"
    api.get(f"/transfer/verify/{reference}").mock(return_value=sample("transfer_verify"))

    result = await client.verify_transfer(reference)

    assert result == TransferResult(reference, "TRF_8opchtrhtjlfz90n", "success", 100000, "NGN")


async def test_a_verify_answer_about_another_transfer_is_off_contract(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/transfer/verify/payout-0001-someoneelse").mock(return_value=sample("transfer_verify"))

    with pytest.raises(GatewayProtocolError):
        await client.verify_transfer("payout-0001-someoneelse")


def _sent_as_answered(name: str) -> list[BulkTransferItem]:
    """What we would have sent for a bulk sample's items (references made up where it has none)."""
    return [
        BulkTransferItem(amount=item["amount"], reference=item.get("reference", f"payout-{i:04d}-bulk-legacy"),
                         recipient=item["recipient"], reason="distribution")
        for i, item in enumerate(paystack_sample(name)["data"])
    ]


async def test_paystack_bulk_transfer_body(client: PaystackClient, api: respx.MockRouter) -> None:
    api.post("/transfer/bulk").mock(return_value=sample("transfer_bulk"))
    sent = _sent_as_answered("transfer_bulk")

    results = await client.bulk_transfer(currency="NGN", transfers=sent)

    assert [(r.reference, r.transfer_code, r.status, r.amount) for r in results] == [
        ("acv_2627bbfe-1a2a-4a1a-8d0e-9d2ee6c31496", "TRF_o0mv5dc2lv4t2wdb", "success", 20000),
        ("acv_1bd0c1f8-78c2-463b-8bd4-ed9eeb36be50", "TRF_tlvxomz43gjso2py", "success", 35000),
        ("acv_11bebfc3-18b3-40aa-a4df-c55068c93457", "TRF_yt2y2gcd3dmli8av", "success", 15000),
    ]
    assert all(r.is_success for r in results)


async def test_paystack_legacy_bulk_body_with_indistinguishable_items_leaves_outcomes_unknown(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    # both items: the same recipient and amount, no reference, no status
    api.post("/transfer/bulk").mock(return_value=sample("transfer_bulk_legacy"))

    assert await client.bulk_transfer(currency="NGN", transfers=_sent_as_answered("transfer_bulk_legacy")) == []


async def test_paystack_legacy_bulk_body_is_matched_by_recipient_and_amount(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    answer = paystack_sample("transfer_bulk_legacy")
    answer["data"][1]["recipient"] = "RCP_second000000001"
    answer["data"].append({"recipient": "RCP_third0000000001", "amount": 700, "transfer_code": "TRF_third",
                           "currency": "NGN"})
    api.post("/transfer/bulk").mock(return_value=httpx.Response(200, json=answer))
    sent = [
        BulkTransferItem(amount=700, reference="payout-0003-third", recipient="RCP_third0000000001", reason="c"),
        BulkTransferItem(amount=50000, reference="payout-0002-second", recipient="RCP_second000000001", reason="b"),
        BulkTransferItem(amount=50000, reference="payout-0001-first", recipient="RCP_db342dvqvz9qcrn", reason="a"),
        # sent but absent from the answer: no result, outcome unknown
        BulkTransferItem(amount=900, reference="payout-0004-missing", recipient="RCP_fourth000000001", reason="d"),
    ]

    results = await client.bulk_transfer(currency="NGN", transfers=sent)

    assert results == [
        TransferResult("payout-0001-first", "TRF_jblmryckdrc6zq4", None, 50000, "NGN"),
        TransferResult("payout-0002-second", "TRF_yqs7t2w2xndexy7", None, 50000, "NGN"),
        TransferResult("payout-0003-third", "TRF_third", None, 700, "NGN"),
    ]
    assert not any(r.is_success or r.is_conclusive_failure or r.is_in_progress for r in results)


async def test_a_bulk_answer_naming_a_transfer_we_did_not_send_is_off_contract(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.post("/transfer/bulk").mock(return_value=sample("transfer_bulk"))
    sent = _sent_as_answered("transfer_bulk")[:2]

    with pytest.raises(GatewayProtocolError):
        await client.bulk_transfer(currency="NGN", transfers=sent)


async def test_paystack_bank_list_bodies_follow_the_cursor(client: PaystackClient, api: respx.MockRouter) -> None:
    last_page = {"status": True, "message": "Banks retrieved", "data": [],
                 "meta": {"next": None, "previous": "YmFuazoxNjk=", "perPage": 5}}
    route = api.get("/bank").mock(side_effect=[sample("bank_list_ngn_cursor"), httpx.Response(200, json=last_page)])

    banks = await client.list_banks("NGN")

    assert [(b.code, b.name) for b in banks] == [
        ("801", "Abbey Mortgage Bank"), ("559", "Coronation Merchant Bank"), ("50457", "Infinity MFB"),
        ("999992", "Paycom"), ("50746", "Petra Mircofinance Bank Plc"),
    ]
    assert {b.currency for b in banks} == {"NGN"}
    assert route.calls[1].request.url.params["next"] == "YmFuazoxNjk="


async def test_paystack_bank_list_body_without_meta(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.get("/bank").mock(return_value=sample("bank_list_ghs_mobile_money"))

    banks = await client.list_banks("GHS")

    assert banks == [Bank("AirtelTigo", "ATL", "GHS", "mobile_money"), Bank("MTN", "MTN", "GHS", "mobile_money"),
                     Bank("Vodafone", "VOD", "GHS", "mobile_money")]
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bank_resolve", ResolvedAccount("0022728151", "WES GIBBONS", None)),
        ("bank_resolve_with_bank_id", ResolvedAccount("0001234567", "Doe Jane Loren", 9)),
    ],
)
async def test_paystack_resolve_account_bodies(
    client: PaystackClient, api: respx.MockRouter, name: str, expected: ResolvedAccount
) -> None:
    api.get("/bank/resolve").mock(return_value=sample(name))

    assert await client.resolve_account(account_number=expected.account_number, bank_code="058") == expected


async def test_paystack_balance_body(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.get("/balance").mock(return_value=sample("balance"))

    assert await client.fetch_balance() == [Balance(currency="NGN", balance=1700000)]
    assert_authorized(route.calls.last.request)


@pytest.mark.parametrize(
    "data", [{"currency": "NGN"}, {"currency": "NGN", "balance": "1700000"}, {"balance": 1}],
    ids=["no-balance", "balance-as-string", "no-currency"],
)
async def test_an_off_contract_balance_raises_protocol_error(
    client: PaystackClient, api: respx.MockRouter, data: dict[str, Any]
) -> None:
    api.get("/balance").mock(return_value=ok([data]))

    with pytest.raises(GatewayProtocolError):
        await client.fetch_balance()


# Transfer OTP: Paystack's documented answers for a transfer held for its OTP, its finalize and its resend


async def test_paystack_transfer_answering_otp(client: PaystackClient, api: respx.MockRouter) -> None:
    api.post("/transfer").mock(return_value=sample("transfer_initiate_otp"))

    result = await client.initiate_transfer(amount=20000, recipient="RCP_x", reference="x8beye1xud", reason="r",
                                            currency="NGN")

    assert (result.status, result.transfer_code, result.is_in_progress) == ("otp", "TRF_1aqrqhoomp0rjro", True)
    assert not (result.is_success or result.is_conclusive_failure)


async def test_paystack_finalize_transfer_body(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transfer/finalize_transfer").mock(return_value=sample("transfer_finalize"))

    result = await client.finalize_transfer(transfer_code="TRF_vsyqdmlzble3uii", otp="928783", reference="on5hyz9poe")

    assert result == TransferResult(reference="on5hyz9poe", transfer_code="TRF_vsyqdmlzble3uii", status="success",
                                    amount=3794800, currency="NGN")
    assert body_of(route.calls.last.request) == {"transfer_code": "TRF_vsyqdmlzble3uii", "otp": "928783"}
    assert_authorized(route.calls.last.request)


async def test_a_finalize_answer_about_another_transfer_is_off_contract(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.post("/transfer/finalize_transfer").mock(return_value=sample("transfer_finalize"))

    with pytest.raises(GatewayProtocolError):
        await client.finalize_transfer(transfer_code="TRF_another", otp="928783", reference="on5hyz9poe")
    with pytest.raises(GatewayProtocolError):
        await client.finalize_transfer(transfer_code="TRF_vsyqdmlzble3uii", otp="928783", reference="not-ours-00000")


async def test_a_refused_otp_is_a_rejection(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transfer/finalize_transfer").mock(return_value=httpx.Response(
        400, json={"status": False, "message": "Invalid OTP", "type": "validation_error", "code": "invalid_otp"}))

    with pytest.raises(GatewayRejected) as caught:
        await client.finalize_transfer(transfer_code="TRF_vsyqdmlzble3uii", otp="000000", reference="on5hyz9poe")

    assert (caught.value.status_code, caught.value.message) == (400, "Invalid OTP")
    assert route.call_count == 1


async def test_a_finalize_is_never_sent_twice(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transfer/finalize_transfer").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(GatewayTimeout):
        await client.finalize_transfer(transfer_code="TRF_vsyqdmlzble3uii", otp="928783", reference="on5hyz9poe")

    assert route.call_count == 1  # an unknown outcome is asked about (verify), not repeated


async def test_paystack_resend_otp_answer_has_no_data(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/transfer/resend_otp").mock(return_value=sample("transfer_resend_otp"))

    assert await client.resend_transfer_otp(transfer_code="TRF_vsyqdmlzble3uii") is None
    assert body_of(route.calls.last.request) == {"transfer_code": "TRF_vsyqdmlzble3uii", "reason": "transfer"}
    assert_authorized(route.calls.last.request)


async def test_a_refused_resend_is_a_rejection(client: PaystackClient, api: respx.MockRouter) -> None:
    api.post("/transfer/resend_otp").mock(return_value=httpx.Response(
        400, json={"status": False, "message": "Transfer is not currently awaiting OTP"}))

    with pytest.raises(GatewayRejected):
        await client.resend_transfer_otp(transfer_code="TRF_vsyqdmlzble3uii")
