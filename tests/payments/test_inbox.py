"""The inbox keeps what the worker needs of a webhook, with account numbers and authorization codes redacted."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.gateway.signature import sign
from app.models import WebhookEvent
from app.webhooks.inbox import REDACTED, redact_payload
from tests.helpers import PAYSTACK_SAMPLES, paystack_sample

# Found in the files' text, independently of the code under test.
_SENSITIVE = re.compile(r'"(?:\w*account_number|authorization_code)":\s*"([^"]+)"')
SENSITIVE_SAMPLES = sorted(path.stem for path in PAYSTACK_SAMPLES.glob("*.json") if _SENSITIVE.search(path.read_text()))

Path = tuple[str | int, ...]
# Each webhook sample holding such fields: what redaction changes in it (everything else stays as it was).
WEBHOOK_CHANGES: dict[str, dict[Path, Any]] = {
    "webhook_charge_success": {("data", "authorization", "authorization_code"): REDACTED},
    "webhook_charge_success_recorded": {("data", "authorization", "authorization_code"): REDACTED},
    "webhook_transfer_success": {("data", "recipient", "details", "account_number"): "******3210"},
    "webhook_transfer_failed": {("data", "recipient", "details", "account_number"): "******6789"},
    "webhook_transfer_reversed": {("data", "recipient", "details", "account_number"): "******0000"},
}


def _set(body: dict[str, Any], path: Path, value: Any) -> None:
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def test_every_sample_holding_such_fields_is_covered() -> None:
    webhooks = {name for name in SENSITIVE_SAMPLES if name.startswith("webhook_")}
    assert webhooks == set(WEBHOOK_CHANGES)
    assert {"transaction_verify_success", "transfer_verify", "transferrecipient_create_nuban"} <= set(SENSITIVE_SAMPLES)


@pytest.mark.parametrize("name", sorted(WEBHOOK_CHANGES))
def test_redaction_changes_those_fields_and_nothing_else(name: str) -> None:
    expected = paystack_sample(name)
    for path, value in WEBHOOK_CHANGES[name].items():
        _set(expected, path, value)
    assert redact_payload(paystack_sample(name)) == expected


@pytest.mark.parametrize("name", SENSITIVE_SAMPLES)
def test_no_account_number_or_authorization_code_survives(name: str) -> None:
    """Any of Paystack's bodies (a dispute's webhook embeds a whole transaction, for one)."""
    secrets = _SENSITIVE.findall((PAYSTACK_SAMPLES / f"{name}.json").read_text())
    sample = paystack_sample(name)
    kept = json.dumps(redact_payload(sample))
    assert secrets and not [secret for secret in secrets if secret in kept]
    assert "AUTH_" not in kept
    assert redact_payload(sample).keys() == sample.keys()


def test_redaction_reaches_any_depth_and_keeps_the_last_four_digits() -> None:
    body = {"data": {"transaction": {"authorization": {"authorization_code": "AUTH_x1"}},
                     "items": [{"recipient": {"details": {"account_number": 1234567890}}}],
                     "receiver_bank_account_number": "0987654321", "short_account_number": "1234",
                     "authorization_code": None, "account_number": None, "reference": "ref-1"}}
    assert redact_payload(body) == {"data": {
        "transaction": {"authorization": {"authorization_code": REDACTED}},
        "items": [{"recipient": {"details": {"account_number": "******7890"}}}],
        "receiver_bank_account_number": "******4321", "short_account_number": "****",
        "authorization_code": None, "account_number": None, "reference": "ref-1"}}


async def _stored(app: FastAPI) -> list[WebhookEvent]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))).all())


async def test_a_webhook_is_stored_redacted(client: httpx.AsyncClient, app: FastAPI) -> None:
    secret = app.state.runtime.settings.paystack_secret_key.get_secret_value()
    for name in ("webhook_charge_success", "webhook_transfer_success"):
        body = (PAYSTACK_SAMPLES / f"{name}.json").read_bytes()
        response = await client.post("/v1/webhooks/paystack", content=body,
                                     headers={"content-type": "application/json",
                                              "x-paystack-signature": sign(body, secret)})
        assert response.status_code == 200, response.text
    charge, transfer = await _stored(app)
    sample = paystack_sample("webhook_charge_success")
    assert (charge.event, charge.dedup_key) == ("charge.success", "charge.success:302961")
    assert json.loads(charge.payload) == {"event": "charge.success", "data": redact_payload(sample["data"])}
    assert "AUTH_f5rnfq9p" not in charge.payload
    assert "9876543210" not in transfer.payload and "******3210" in transfer.payload
