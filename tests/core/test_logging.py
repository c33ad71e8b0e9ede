"""Logs are JSON lines with the request id; secrets, signatures and tokens never appear in them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.core.logging import JsonFormatter, configure_logging, redact, request_id


def test_redaction_of_secrets_tokens_and_signatures() -> None:
    signature = "ab" * 64
    text = f"key sk_live_abcDEF123 header Bearer eyJhbGciOi.x.y sig {signature}"
    cleaned = redact(text)
    assert "sk_live_abcDEF123" not in cleaned
    assert "eyJhbGciOi" not in cleaned
    assert signature not in cleaned


def test_json_lines_carry_the_request_id() -> None:
    token = request_id.set("req-42")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "paid with sk_test_secret123", None, None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["request_id"] == "req-42"
    assert line["level"] == "INFO"
    assert "sk_test_secret123" not in line["message"]


async def test_a_rejected_webhook_logs_no_signature(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    signature = "cd" * 64
    with caplog.at_level(logging.DEBUG):
        response = await client.post("/v1/webhooks/paystack", content=b'{"event":"x","data":{}}',
                                     headers={"x-paystack-signature": signature})
        await client.get("/v1/payments", headers=auth("investor-1"))
    assert response.status_code == 400
    formatter = JsonFormatter()
    rendered = "\n".join(formatter.format(record) for record in caplog.records)
    assert signature not in rendered
    assert "Bearer" not in rendered


ACCOUNT_NUMBER = "3057918264"


@pytest.mark.parametrize("text", [
    f"GET /bank/resolve?account_number={ACCOUNT_NUMBER}&bank_code=057",
    f'{{"recipient": {{"details": {{"account_number": "{ACCOUNT_NUMBER}", "bank_code": "057"}}}}}}',
    f'{{\\"receiver_bank_account_number\\":\\"{ACCOUNT_NUMBER}\\"}}',
    f"('transfer.success', {{'account_number': '{ACCOUNT_NUMBER}'}})",
    f"account_number={ACCOUNT_NUMBER}",
])
def test_redaction_of_account_numbers_named_by_their_key(text: str) -> None:
    cleaned = redact(text)
    assert ACCOUNT_NUMBER not in cleaned
    assert "account_number" in cleaned and "[redacted]" in cleaned


@pytest.mark.parametrize("text", [
    '{"authorization": {"authorization_code": "AUTH_f5rnfq9p", "last4": "8877"}}',
    "card authorized as AUTH_f5rnfq9p",
    "authorization_code=Zx81kQ",
])
def test_redaction_of_authorization_codes(text: str) -> None:
    cleaned = redact(text)
    assert "f5rnfq9p" not in cleaned and "Zx81kQ" not in cleaned
    assert "8877" in cleaned or "8877" not in text


@pytest.mark.parametrize("text", ['{"transfer_code": "TRF_1aqrqhoomp0rjro", "otp": "928783"}', "otp=928783",
                                  "{'otp': '928783'}"])
def test_redaction_of_transfer_otps(text: str) -> None:
    cleaned = redact(text)
    assert "928783" not in cleaned and "[redacted]" in cleaned
    assert "TRF_1aqrqhoomp0rjro" in cleaned or "TRF_" not in text


def test_redaction_keeps_what_is_not_sensitive() -> None:
    text = ('{"account_number_last4": "8264", "authorization_code": null, "reference": "pay-1", "bank_code": "057"}'
            " OAUTH_TOKEN_URL")
    assert redact(text) == text


async def test_the_gateway_client_logs_no_query_string(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """PUT /v1/payout-accounts/me calls the gateway's GET /bank/resolve?account_number=..."""
    with caplog.at_level(logging.DEBUG):
        response = await client.put("/v1/payout-accounts/me", headers=auth("owner-1"),
                                    json={"bank_code": "057", "account_number": ACCOUNT_NUMBER, "currency": "NGN"})
    assert response.status_code == 200, response.text
    # the messages themselves, before the JSON formatter's redaction
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("HTTP Request: GET http://testserver/sandbox/paystack/bank/resolve ") for m in messages)
    assert not [m for m in messages if ACCOUNT_NUMBER in m]


async def test_the_access_log_has_the_path_without_the_query(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn's access line (its format and arguments), for the sandbox's own route."""
    with caplog.at_level(logging.INFO):
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET",
            f"/sandbox/paystack/bank/resolve?account_number={ACCOUNT_NUMBER}&bank_code=057", "1.1", 200)
    [record] = caplog.records
    assert record.getMessage() == '127.0.0.1:50000 - "GET /sandbox/paystack/bank/resolve HTTP/1.1" 200'


async def test_a_logged_sql_error_carries_no_parameters(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(DBAPIError) as caught:
        async with app.state.runtime.db.unit_of_work() as session:
            await session.execute(text("SELECT * FROM no_such_table WHERE account = :account"),
                                  {"account": ACCOUNT_NUMBER})
    with caplog.at_level(logging.ERROR):
        logging.getLogger("test").error("failed", exc_info=caught.value)
    formatted = JsonFormatter().format(caplog.records[0])
    assert "no_such_table" in formatted
    assert ACCOUNT_NUMBER not in formatted and ACCOUNT_NUMBER not in str(caught.value)


def test_configured_logging_leaves_out_sql_parameter_dumps() -> None:
    """aiosqlite logs every statement with its parameters at DEBUG."""
    configure_logging("DEBUG")
    try:
        assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("app").isEnabledFor(logging.DEBUG)
    finally:
        configure_logging("WARNING")
