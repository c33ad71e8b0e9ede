"""The strict models of Paystack's answers, through the client: extra fields and the older shapes are read,
anything else off the contract is a GatewayProtocolError that names where (never the values), and is never
a reason to send a call again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.gateway.client import PaystackClient
from app.gateway.errors import GatewayProtocolError
from app.gateway.types import BulkTransferItem, RefundResult
from tests.gateway import test_client
from tests.gateway.test_client import BASE_URL, ok, verify_data
from tests.helpers import paystack_sample

# The client suite's fixtures, shared.
sleeps, client, api = test_client.sleeps, test_client.client, test_client.api


def refund_data(**overrides: Any) -> dict[str, Any]:
    return {**paystack_sample("refund_create")["data"], **overrides}


async def test_fields_the_service_does_not_read_are_ignored(client: PaystackClient, api: respx.MockRouter) -> None:
    api.get("/transaction/verify/ref-123").mock(
        return_value=ok(verify_data(log={"history": []}, split={}, brand_new_field=[1, 2, 3]))
    )

    verified = await client.verify_transaction("ref-123")

    assert (verified.id, verified.amount, verified.customer_email) == (4099260516, 500000, "ada@example.com")


@pytest.mark.parametrize("absent", [None, {}, [], ""], ids=["null", "empty-object", "empty-list", "empty-string"])
async def test_an_absent_nested_object_may_be_sent_in_any_of_paystacks_forms(
    client: PaystackClient, api: respx.MockRouter, absent: object
) -> None:
    api.get("/transaction/verify/ref-123").mock(return_value=ok(verify_data(authorization=absent, customer=absent)))

    verified = await client.verify_transaction("ref-123")

    assert (verified.authorization_code, verified.customer_email) == (None, None)


@pytest.mark.parametrize(
    "data",
    [verify_data(authorization="AUTH_secret"), verify_data(customer=["ada@example.com"]),
     verify_data(fees="7500"), verify_data(id=None), verify_data(status="")],
    ids=["authorization-as-text", "customer-as-list", "fees-as-string", "no-id", "empty-status"],
)
async def test_an_off_contract_verify_names_the_field_and_not_its_value(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], data: dict[str, Any]
) -> None:
    route = api.get("/transaction/verify/ref-123").mock(return_value=ok(data))

    with pytest.raises(GatewayProtocolError) as caught:
        await client.verify_transaction("ref-123")

    assert "AUTH_secret" not in caught.value.message and "ada@example.com" not in caught.value.message
    assert "VerifyAnswer" in caught.value.message
    assert route.call_count == 1 and sleeps == []


async def test_a_refund_answer_names_its_charge_as_an_object_or_as_an_id(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.post("/refund").mock(return_value=ok(refund_data(id=5, transaction={"id": 41, "reference": "ref-123"})))
    api.get("/refund/6").mock(
        return_value=ok(refund_data(id=6, transaction=41, transaction_reference="ref-123", createdAt=None,
                                    created_at="2024-03-01T10:15:30.000Z"))
    )

    created = await client.create_refund(transaction="ref-123")
    fetched = await client.fetch_refund(6)

    assert (created.transaction_id, created.transaction_reference) == (41, "ref-123")
    assert fetched == RefundResult(
        id=6, status=fetched.status, amount=fetched.amount, currency="NGN", transaction_reference="ref-123",
        transaction_id=41, merchant_note=fetched.merchant_note,
        created_at=datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "data",
    [refund_data(amount="10000"), refund_data(id=True), refund_data(transaction="ref-123"),
     refund_data(createdAt="last tuesday"), {k: v for k, v in refund_data().items() if k != "status"}],
    ids=["amount-as-string", "id-as-bool", "charge-as-text", "bad-timestamp", "no-status"],
)
async def test_an_off_contract_refund_answer_is_a_protocol_error_and_the_refund_is_not_sent_again(
    client: PaystackClient, api: respx.MockRouter, sleeps: list[float], data: dict[str, Any]
) -> None:
    route = api.post("/refund").mock(side_effect=[ok(data), ok(refund_data())])

    with pytest.raises(GatewayProtocolError):
        await client.create_refund(transaction="ref-123", amount=10000)

    assert route.call_count == 1
    assert sleeps == []


async def test_a_list_with_an_off_contract_meta_is_a_protocol_error(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/refund").mock(return_value=ok(paystack_sample("refund_list")["data"], meta={"pageCount": "2"}))

    with pytest.raises(GatewayProtocolError) as caught:
        await client.list_refunds(transaction="ref-123")

    assert "meta.pageCount" in caught.value.message


async def test_a_list_whose_data_is_not_a_list_is_a_protocol_error(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/bank").mock(return_value=ok({"name": "Access Bank", "code": "044", "currency": "NGN"}))

    with pytest.raises(GatewayProtocolError):
        await client.list_banks("NGN")


@pytest.mark.parametrize("amount", ["50000", True, None], ids=["string", "bool", "null"])
async def test_a_bulk_item_with_an_off_contract_amount_is_a_protocol_error(
    client: PaystackClient, api: respx.MockRouter, amount: object
) -> None:
    item = {**paystack_sample("transfer_bulk_legacy")["data"][0], "amount": amount}
    api.post("/transfer/bulk").mock(return_value=ok([item]))

    with pytest.raises(GatewayProtocolError):
        await client.bulk_transfer(
            currency="NGN",
            transfers=[BulkTransferItem(amount=50000, reference="payout_1", recipient="RCP_db342dvqvz9qcrn",
                                        reason="r")],
        )


async def test_an_empty_timestamp_reads_as_unknown(client: PaystackClient, api: respx.MockRouter) -> None:
    api.get("/transaction/verify/ref-123").mock(return_value=ok(verify_data(paid_at="")))

    assert (await client.verify_transaction("ref-123")).paid_at is None


async def test_a_naive_timestamp_is_read_as_utc(sleeps: list[float]) -> None:
    with respx.mock(using="httpx", base_url=BASE_URL) as router:
        router.get("/transaction/verify/ref-123").mock(
            return_value=httpx.Response(200, json={"status": True, "data": verify_data(paid_at="2024-03-01T10:15:30")})
        )
        async with PaystackClient(base_url=BASE_URL, secret_key="sk_test_x") as paystack:
            verified = await paystack.verify_transaction("ref-123")

    assert verified.paid_at == datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC)
