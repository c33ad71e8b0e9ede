"""The platform's Python interface (PaymentService, EscrowService) in its async form."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from app.core.errors import ValidationFailed
from app.escrow.service import EscrowService
from app.gateway.signature import sign
from app.models import EscrowTransaction
from app.payments.python_api import PaymentService
from tests.helpers import put_app


async def test_create_payment_through_the_python_interface(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    service = PaymentService(app.state.runtime)
    payment = await service.create_payment(
        amount=1000.00,
        currency="NGN",
        metadata={"payment_type": "investment", "app_id": "app-1", "user_id": "investor-1",
                  "email": "investor@example.com"},
    )
    assert payment["payment_url"].startswith("http://testserver/sandbox/paystack/checkout/")
    assert payment["amount"] == "1000.00" and payment["shares"] == 1
    seen = await client.get(f"/v1/payments/{payment['reference']}", headers=auth("investor-1"))
    assert seen.status_code == 200

    with pytest.raises(ValidationFailed):
        await service.create_payment(amount="1000.00", currency="NGN", metadata={"app_id": "app-1"})


async def test_verify_signature_through_the_python_interface(app: FastAPI) -> None:
    service = PaymentService(app.state.runtime)
    body = b'{"event":"charge.success","data":{"reference":"r"}}'
    secret = app.state.runtime.settings.paystack_secret_key.get_secret_value()
    assert service.verify_signature(body, sign(body, secret))
    assert not service.verify_signature(body + b" ", sign(body, secret))
    assert not service.verify_signature(body, None)


async def test_process_deposit_through_the_python_interface(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    from app.apps.service import get_app

    async with app.state.runtime.db.unit_of_work() as session:
        deposit = await EscrowService(session).process_deposit(
            app=await get_app(session, "app-1"),
            investor="investor-1",
            amount=Decimal("1000.00"),
            currency="NGN",
            payment_gateway="PAYSTACK",
            gateway_reference="ref_123",
        )
    assert isinstance(deposit, EscrowTransaction) and deposit.amount == 100_000
    listed = await client.get("/v1/escrow/transactions", headers=auth("investor-1"))
    assert [t["gateway_reference"] for t in listed.json()["items"]] == ["ref_123"]
    assert (await client.get("/v1/admin/integrity", headers=auth("admin-1", admin=True))).json()["ok"]
