"""Payout accounts against Paystack's documented answers (gateway mode `test`, respx): each country verified its
own way, South Africa by POST /bank/validate, Kenya and mobile money by nothing but the recipient itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from tests.helpers import paystack_sample
from tests.payouts.test_paystack_answers import answer, app, paystack, refusal, settings_overrides

Auth = Callable[..., dict[str, str]]
__all__ = ["app", "paystack", "settings_overrides"]  # the fixtures, shared with test_paystack_answers
ZAR = {"currency": "ZAR", "type": "basa", "bank_code": "632005", "account_number": "0123456789",
       "account_name": "Ann Bron", "account_type": "personal", "document_type": "identityNumber",
       "document_number": "1234567890123"}
MULTI = {"payment_gateway_mode": "test", "paystack_secret_key": "sk_test_payouts_0123456789abcdef",
         "paystack_base_url": "http://127.0.0.1:9/paystack", "enable_multi_currency": True}
pytestmark = pytest.mark.parametrize("settings_overrides", [MULTI])


def basa_recipient() -> dict[str, Any]:
    body = paystack_sample("transferrecipient_create_nuban")
    body["data"].update(type="basa", currency="ZAR", name="Ann Bron")
    body["data"]["details"].update(account_number="0123456789", bank_code="632005")
    return body


async def test_a_south_african_account_is_validated_then_registered(
    client: httpx.AsyncClient, auth: Auth, paystack: respx.MockRouter
) -> None:
    validate = paystack.post("/bank/validate").mock(return_value=answer(paystack_sample("bank_validate")))
    resolve = paystack.get("/bank/resolve")
    recipient = paystack.post("/transferrecipient").mock(return_value=answer(basa_recipient(), 201))

    response = await client.post("/v1/payout-accounts", headers=auth("owner-1"), json=ZAR)

    assert response.status_code == 201, response.text
    assert (response.json()["type"], response.json()["is_default"]) == ("basa", True)
    sent = json.loads(validate.calls.last.request.content)
    assert sent == {k: v for k, v in ZAR.items() if k not in ("currency", "type")} | {"country_code": "ZA"}
    assert json.loads(recipient.calls.last.request.content) == {
        "type": "basa", "name": "Ann Bron", "account_number": "0123456789", "bank_code": "632005", "currency": "ZAR"}
    assert not resolve.called  # Paystack resolves accounts in Nigeria and Ghana only


async def test_a_south_african_account_paystack_does_not_verify_is_the_callers_error(
    client: httpx.AsyncClient, auth: Auth, paystack: respx.MockRouter
) -> None:
    verdict = paystack_sample("bank_validate")
    verdict["data"] = {"verified": False, "verificationMessage": "Account holder does not match"}
    paystack.post("/bank/validate").mock(return_value=answer(verdict))
    recipient = paystack.post("/transferrecipient")

    response = await client.post("/v1/payout-accounts", headers=auth("owner-1"), json=ZAR)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]["gateway_message"]) == (
        "INVALID_BANK_ACCOUNT", "Account holder does not match")
    assert not recipient.called
    assert ZAR["document_number"] not in response.text


@pytest.mark.parametrize(("status", "code", "expected"), [
    (400, "INVALID_BANK_ACCOUNT", 422), (401, "GATEWAY_ERROR", 502), (403, "GATEWAY_ERROR", 502)])
async def test_validation_refused_by_paystack(
    client: httpx.AsyncClient, auth: Auth, paystack: respx.MockRouter, status: int, code: str, expected: int
) -> None:
    """A refusal of the details is the caller's; one of our key or integration stays a gateway error."""
    paystack.post("/bank/validate").mock(return_value=refusal(status, "Refused", "refused"))

    response = await client.post("/v1/payout-accounts", headers=auth("owner-1"), json=ZAR)

    assert (response.status_code, response.json()["error"]["code"]) == (expected, code), response.text


async def test_kenya_registers_the_recipient_without_any_lookup(
    client: httpx.AsyncClient, auth: Auth, paystack: respx.MockRouter
) -> None:
    resolve, validate = paystack.get("/bank/resolve"), paystack.post("/bank/validate")
    recipient = paystack.post("/transferrecipient").mock(
        return_value=answer(paystack_sample("transferrecipient_create_mobile_money_business_kes"), 201))
    body = {"currency": "KES", "type": "mobile_money_business", "bank_code": "MPTILL", "account_number": "247247",
            "account_name": "Till Transfer Example"}

    response = await client.post("/v1/payout-accounts", headers=auth("owner-1"), json=body)

    assert response.status_code == 201, response.text
    assert (response.json()["recipient_code"], response.json()["last4"]) == ("RCP_5vl8b2yma7xdnjp", "7247")
    assert json.loads(recipient.calls.last.request.content)["type"] == "mobile_money_business"
    assert not resolve.called and not validate.called
