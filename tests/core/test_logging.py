"""Logs are JSON lines with the request id; secrets, signatures and tokens never appear in them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest

from app.core.logging import JsonFormatter, redact, request_id


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
