"""The client's list calls for reconciliation, against Paystack's documented list bodies (respx)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from app.gateway.client import PaystackClient
from app.gateway.errors import GatewayProtocolError, GatewayRejected
from app.gateway.types import TransactionRecord, TransferRecord
from tests.helpers import paystack_sample

BASE_URL = "https://api.paystack.test"
SECRET = "sk_test_0123456789abcdef"
START, END = datetime(2024, 8, 22, tzinfo=UTC), datetime(2024, 8, 23, 12, 30, 1, 250_000, tzinfo=UTC)


def successful_item(reference: str, **overrides: Any) -> dict[str, Any]:
    """A successful list item, built from the documented (failed) ones as Paystack shows a paid charge:
    `amount` holds the customer's fees on top of `requested_amount`."""
    item = paystack_sample("transaction_list_failed_items")["data"][0]
    item.update(status="success", reference=reference, gateway_response="Successful", amount=40333,
                requested_amount=30050, fees=10283, paid_at="2024-08-22T09:15:02.000Z",
                created_at="2024-08-22T09:14:24.000Z", id=4099260516)
    item.update(overrides)
    return item


def transfer_item(**overrides: Any) -> dict[str, Any]:
    """GET /transfer's item as Paystack documents it (recipient object, no `reference` in the older shape)."""
    item: dict[str, Any] = {
        "integration": 100073, "domain": "test", "amount": 4400, "currency": "NGN", "source": "balance",
        "source_details": None, "reason": "Eater", "status": "otp", "failures": None,
        "transfer_code": "TRF_1ptvuv321ahaa7q", "id": 14, "createdAt": "2017-02-03T17:21:54.000Z",
        "updatedAt": "2017-02-03T17:21:54.000Z",
        "recipient": {"domain": "test", "type": "nuban", "currency": "NGN", "name": "Flesh",
                      "recipient_code": "RCP_2x5j67tnnw1t98k", "active": True, "id": 28},
    }
    item.update(overrides)
    return item


def page(data: list[dict[str, Any]], **meta: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": True, "message": "Retrieved", "data": data, "meta": meta})


@pytest.fixture
async def client() -> AsyncIterator[PaystackClient]:
    async with PaystackClient(base_url=BASE_URL, secret_key=SECRET, timeout=1.0, max_retries=0) as paystack:
        yield paystack


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(using="httpx", base_url=BASE_URL, assert_all_called=True) as router:
        yield router


async def test_list_transactions_reads_every_page_until_the_page_count(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    route = api.get("/transaction").mock(side_effect=[
        page([successful_item("pay-a"), successful_item("pay-b", requested_amount=None, amount=5000)],
             total=3, skipped=0, perPage=100, page=1, pageCount=2),
        page([successful_item("pay-c", createdAt="2024-08-23T00:00:01.000Z", created_at=None)],
             total=3, skipped=100, perPage=100, page=2, pageCount=2),
    ])

    records = await client.list_transactions(start=START, end=END, status="success")

    assert records[0] == TransactionRecord(
        id=4099260516, reference="pay-a", status="success", amount=40333, requested_amount=30050, currency="NGN",
        paid_at=datetime(2024, 8, 22, 9, 15, 2, tzinfo=UTC), created_at=datetime(2024, 8, 22, 9, 14, 24, tzinfo=UTC),
    )
    assert (records[1].amount, records[1].requested_amount) == (5000, None)
    assert records[2].created_at == datetime(2024, 8, 23, 0, 0, 1, tzinfo=UTC)
    first, second = (call.request for call in route.calls)
    assert first.headers["authorization"] == f"Bearer {SECRET}"
    assert dict(first.url.params) == {"from": "2024-08-22T00:00:00.000Z", "to": "2024-08-23T12:30:01.250Z",
                                      "status": "success", "perPage": "100", "page": "1"}
    assert dict(second.url.params)["page"] == "2"


async def test_list_transactions_reads_the_documented_failed_items(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/transaction").mock(return_value=httpx.Response(200, json=paystack_sample(
        "transaction_list_failed_items")))
    records = await client.list_transactions(start=START, end=END)
    assert [(r.reference, r.status, r.amount, r.requested_amount) for r in records] == [
        ("icy9ma6jd1", "failed", 100, 100), ("z1gsnks86e6kfo8", "failed", 10000, 10000)]
    assert records[1].paid_at == datetime(2016, 9, 29, 0, 3, 25, tzinfo=UTC)  # only `paidAt` is set


async def test_list_transfers_without_a_page_count_stops_at_a_short_page(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    full = [transfer_item(id=i, transfer_code=f"TRF_{i:015d}", reference=f"payout-{i:020d}") for i in range(100)]
    route = api.get("/transfer").mock(side_effect=[page(full, perPage=100), page([transfer_item()], perPage=100)])

    records = await client.list_transfers(start=START, end=END)

    assert len(records) == 101
    assert records[0].reference == "payout-00000000000000000000"
    assert records[-1] == TransferRecord(reference=None, transfer_code="TRF_1ptvuv321ahaa7q", status="otp",
                                         amount=4400, currency="NGN",
                                         created_at=datetime(2017, 2, 3, 17, 21, 54, tzinfo=UTC))
    assert [call.request.url.params["page"] for call in route.calls] == ["1", "2"]
    assert "status" not in route.calls[0].request.url.params


async def test_fetch_transaction_record_reads_verify_in_list_terms(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    api.get("/transaction/verify/pay-a").mock(return_value=httpx.Response(
        200, json=paystack_sample("transaction_verify_success") | {"data": successful_item("pay-a")}))
    assert (await client.fetch_transaction_record("pay-a")).requested_amount == 30050
    api.get("/transaction/verify/pay-gone").mock(return_value=httpx.Response(
        404, json={"status": False, "message": "Transaction reference not found"}))
    with pytest.raises(GatewayRejected) as missing:
        await client.fetch_transaction_record("pay-gone")
    assert missing.value.status_code == 404


async def test_a_list_item_off_contract_is_a_protocol_error(client: PaystackClient, api: respx.MockRouter) -> None:
    api.get("/transfer").mock(return_value=page([transfer_item(amount="4400")]))
    with pytest.raises(GatewayProtocolError):
        await client.list_transfers(start=START, end=END)
