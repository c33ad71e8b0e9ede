"""The client's payout-account calls against Paystack's documented answers (respx): South Africa's account
validation (POST /bank/validate) and transfer recipients of every type the service registers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from app.gateway.client import PaystackClient
from app.gateway.errors import GatewayProtocolError, GatewayRejected
from app.gateway.types import AccountValidation, TransferRecipient
from tests.helpers import paystack_sample

BASE_URL = "https://api.paystack.test"
SECRET = "sk_test_0123456789abcdef"
# The body of the API reference's example request (Verification, Validate Account).
VALIDATE = {"bank_code": "632005", "country_code": "ZA", "account_number": "0123456789", "account_name": "Ann Bron",
            "account_type": "personal", "document_type": "identityNumber", "document_number": "1234567890123"}


@pytest.fixture
async def client() -> AsyncIterator[PaystackClient]:
    paystack = PaystackClient(base_url=BASE_URL, secret_key=SECRET, timeout=1.0, max_retries=1, backoff_base=0.0)
    try:
        yield paystack
    finally:
        await paystack.aclose()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(using="httpx", base_url=BASE_URL, assert_all_called=False) as router:
        yield router


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


# ---- POST /bank/validate ------------------------------------------------------------------------------------


async def test_validate_account_sends_the_documented_fields(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/bank/validate").mock(return_value=httpx.Response(200, json=paystack_sample("bank_validate")))

    result = await client.validate_account(**VALIDATE)

    assert result == AccountValidation(verified=True, message="Account is verified successfully")
    request = route.calls.last.request
    assert body_of(request) == VALIDATE
    assert request.headers["authorization"] == f"Bearer {SECRET}"


async def test_validate_account_reads_the_longer_documented_answer_and_a_refusal_verdict(
    client: PaystackClient, api: respx.MockRouter
) -> None:
    """The API reference's other sample carries the individual checks; `verified: false` is a verdict."""
    data = {"accountAcceptsDebits": True, "accountAcceptsCredits": True, "accountHolderMatch": False,
            "accountOpenForMoreThanThreeMonths": True, "accountOpen": True, "verified": False,
            "verificationMessage": "Account holder does not match"}
    api.post("/bank/validate").mock(return_value=httpx.Response(
        200, json={"status": True, "message": "Personal Account Verification attempted", "data": data}))

    assert await client.validate_account(**VALIDATE) == AccountValidation(False, "Account holder does not match")


async def test_validate_account_refused_and_off_contract(client: PaystackClient, api: respx.MockRouter) -> None:
    route = api.post("/bank/validate")
    route.mock(return_value=httpx.Response(400, json={"status": False, "message": "Invalid bank code",
                                                      "type": "validation_error", "code": "invalid_bank_code"}))
    with pytest.raises(GatewayRejected) as refused:
        await client.validate_account(**VALIDATE)
    assert (refused.value.status_code, refused.value.gateway_code) == (400, "invalid_bank_code")
    assert route.call_count == 1  # a refusal is final

    route.mock(return_value=httpx.Response(200, json={"status": True, "message": "ok", "data": {"verified": "yes"}}))
    with pytest.raises(GatewayProtocolError) as off:
        await client.validate_account(**VALIDATE)
    assert VALIDATE["document_number"] not in str(off.value)


# ---- POST /transferrecipient, one per type ----------------------------------------------------------------


def recipient_answer(kind: str, currency: str, bank_code: str, bank_name: str, account_number: str,
                     name: str) -> dict[str, Any]:
    """Paystack's create answer for a recipient type it has no published sample of (ghipss, kepss, basa, KES
    mobile money): the documented nuban answer with that type's fields."""
    body = paystack_sample("transferrecipient_create_nuban")
    body["data"].update(type=kind, currency=currency, name=name)
    body["data"]["details"].update(account_number=account_number, bank_code=bank_code, bank_name=bank_name)
    return body


@pytest.mark.parametrize(
    ("call", "answer", "expected"),
    [
        ({"type": "ghipss", "name": "Kwame Mensah", "account_number": "1020304050", "bank_code": "040",
          "currency": "GHS"},
         recipient_answer("ghipss", "GHS", "040", "GCB Bank Limited", "1020304050", "Kwame Mensah"),
         TransferRecipient("RCP_m7ljkv8leesep7p", "Kwame Mensah", "040", "4050")),
        ({"type": "mobile_money", "name": "Abina Nana", "account_number": "0551234987", "bank_code": "MTN",
          "currency": "GHS"},
         paystack_sample("transferrecipient_create_mobile_money_ghs"),
         TransferRecipient("RCP_u2tnoyjjvh95pzm", "Abina Nana", "MTN", "4987")),
        # the guide's M-PESA request: type mobile_money, bank_code MPESA
        ({"type": "mobile_money", "name": "Andrew Jones", "account_number": "0751234987", "bank_code": "MPESA",
          "currency": "KES"},
         recipient_answer("mobile_money", "KES", "MPESA", "M-PESA", "0751234987", "Andrew Jones"),
         TransferRecipient("RCP_m7ljkv8leesep7p", "Andrew Jones", "MPESA", "4987")),
        ({"type": "mobile_money_business", "name": "Till Transfer Example", "account_number": "247247",
          "bank_code": "MPTILL", "currency": "KES"},
         paystack_sample("transferrecipient_create_mobile_money_business_kes"),
         TransferRecipient("RCP_5vl8b2yma7xdnjp", "Till Transfer Example", "MPTILL", "7247")),
        ({"type": "kepss", "name": "Wanjiru Kamau", "account_number": "1100234567", "bank_code": "01",
          "currency": "KES"},
         recipient_answer("kepss", "KES", "01", "Kenya Commercial Bank", "1100234567", "Wanjiru Kamau"),
         TransferRecipient("RCP_m7ljkv8leesep7p", "Wanjiru Kamau", "01", "4567")),
        ({"type": "basa", "name": "Ann Bron", "account_number": "0123456789", "bank_code": "632005",
          "currency": "ZAR"},
         recipient_answer("basa", "ZAR", "632005", "Absa Bank Limited, South Africa", "0123456789", "Ann Bron"),
         TransferRecipient("RCP_m7ljkv8leesep7p", "Ann Bron", "632005", "6789")),
    ],
    ids=["ghipss", "GHS mobile_money", "KES mobile_money", "mobile_money_business", "kepss", "basa"],
)
async def test_transfer_recipients_of_every_type(
    client: PaystackClient, api: respx.MockRouter, call: dict[str, str], answer: dict[str, Any],
    expected: TransferRecipient,
) -> None:
    route = api.post("/transferrecipient").mock(return_value=httpx.Response(201, json=answer))

    assert await client.create_transfer_recipient(**call) == expected
    assert body_of(route.calls.last.request) == call
