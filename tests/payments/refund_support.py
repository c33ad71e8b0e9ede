"""What the refund tests share: a small Paystack for gateway mode `test`, answered by respx at a
loopback base URL (charges succeed; refunds are recorded as they arrive, then answered as the test
chooses: well, stalling past the client's timeout, 5xx, malformed JSON, well-formed JSON off the
contract, or never; listed and fetched in Paystack's documented shapes from tests/fixtures/paystack), and
steps over HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, update

from app.core.config import Settings
from app.gateway.signature import sign
from app.ledger import accounts
from app.ledger.service import balance
from app.main import create_app
from app.models import Refund
from app.models.base import utcnow
from tests.conftest import BASE_URL
from tests.helpers import invest, mock_paystack, paystack_sample, put_app

PAYSTACK_URL = "http://127.0.0.1:9/paystack"  # never reached: respx answers
SECRET = "sk_test_fake_paystack_0123456789abcdef"
TEST_MODE = {
    "payment_gateway_mode": "test",
    "paystack_base_url": PAYSTACK_URL,
    "paystack_secret_key": SECRET,
    "gateway_timeout_seconds": 0.2,
    "gateway_max_retries": 1,
}

# What POST /refund does once it has recorded the refund (`refuse` and `unreachable` record nothing).
RefundAnswer = Literal["ok", "stall", "5xx", "malformed", "off_contract", "hang", "refuse", "rate_limit",
                       "unreachable", "5xx_only"]
UNCLEAR_ANSWERS: tuple[RefundAnswer, ...] = ("stall", "5xx", "malformed", "off_contract")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class FakeRefund:
    id: int
    transaction_id: int
    reference: str
    amount: int
    currency: str
    merchant_note: str
    created_at: datetime
    status: str = "pending"

    def list_item(self) -> dict[str, Any]:
        item = paystack_sample("refund_list")["data"][0]
        item.update(id=self.id, transaction=self.transaction_id, amount=self.amount, currency=self.currency,
                    merchant_note=self.merchant_note, status=self.status, created_at=_iso(self.created_at))
        return item

    def fetched(self) -> dict[str, Any]:
        data = paystack_sample("refund_fetch")["data"]
        data.update(id=self.id, transaction=self.transaction_id, amount=self.amount, currency=self.currency,
                    merchant_note=self.merchant_note, status=self.status, createdAt=_iso(self.created_at))
        return data

    def created(self) -> dict[str, Any]:
        body = paystack_sample("refund_create")
        body["data"].update(id=self.id, amount=self.amount, currency=self.currency, merchant_note=self.merchant_note,
                            status=self.status, createdAt=_iso(self.created_at))
        body["data"]["transaction"].update(id=self.transaction_id, reference=self.reference)
        return body


@dataclass
class FakePaystack:
    router: respx.MockRouter
    refund_answer: RefundAnswer = "ok"
    # whether GET /refund shows the refunds recorded so far (Paystack's list may lag behind)
    lists_refunds: bool = True
    # pages GET /refund claims to have (each holding the same refunds)
    list_pages: int = 1
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: list[FakeRefund] = field(default_factory=list)
    refund_posts: list[dict[str, Any]] = field(default_factory=list)
    # set when a POST /refund has been recorded (a test can then stop the worker mid-call)
    refund_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(4_100_000_001))
    _refund_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(3_100_001))

    def __post_init__(self) -> None:
        self.router.post("/transaction/initialize").mock(side_effect=self._initialize)
        self.router.get(path__regex=r"/transaction/verify/(?P<reference>[^/]+)").mock(side_effect=self._verify)
        self.router.post("/refund").mock(side_effect=self._create_refund)
        self.router.get("/refund").mock(side_effect=self._list_refunds)
        self.router.get(path__regex=r"/refund/(?P<refund_id>\d+)").mock(side_effect=self._fetch_refund)

    def refunds_of(self, reference: str) -> list[FakeRefund]:
        return [refund for refund in self.refunds if refund.reference == reference]

    def _initialize(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.charges[body["reference"]] = {"id": next(self._ids), **body}
        data = {"authorization_url": f"https://checkout.paystack.test/{body['reference']}",
                "access_code": body["reference"], "reference": body["reference"]}
        return httpx.Response(200, json={"status": True, "message": "Authorization URL created", "data": data})

    def _verify(self, request: httpx.Request, reference: str) -> httpx.Response:
        charge = self.charges[reference]
        body = paystack_sample("transaction_verify_success")
        body["data"].update(id=charge["id"], reference=reference, amount=charge["amount"],
                            requested_amount=charge["amount"], currency=charge["currency"], status="success",
                            metadata=charge.get("metadata") or "")
        return httpx.Response(200, json=body)

    async def _create_refund(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.refund_posts.append(body)
        answer = self.refund_answer
        if answer == "rate_limit":
            return httpx.Response(429, headers={"x-ratelimit-reset": "0"},
                                  json={"status": False, "message": "Rate limit exceeded"})
        if answer == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        if answer == "5xx_only":
            return httpx.Response(500, json={"status": False, "message": "An error occurred"})
        charge = self.charges[body["transaction"]]
        if answer == "refuse":
            return httpx.Response(400, json={"status": False, "message": "Refund amount cannot be greater than "
                                             "the amount left to refund", "type": "validation_error",
                                             "code": "invalid_params", "meta": {"nextStep": "Check"}})
        refund = FakeRefund(id=next(self._refund_ids), transaction_id=charge["id"], reference=body["transaction"],
                            amount=body.get("amount", charge["amount"]), currency=charge["currency"],
                            merchant_note=body.get("merchant_note", "Refund for transaction"),
                            created_at=datetime.now(UTC))
        self.refunds.append(refund)
        self.refund_arrived.set()
        match answer:
            case "ok":
                return httpx.Response(200, json=refund.created())
            case "stall":
                await asyncio.sleep(30)  # past GATEWAY_TIMEOUT_SECONDS: the client gives up first
                return httpx.Response(200, json=refund.created())
            case "hang":
                await asyncio.Event().wait()  # until the worker waiting for it is stopped
                raise AssertionError("unreachable")
            case "5xx":
                return httpx.Response(502, text="<html>Bad Gateway</html>")
            case "off_contract":  # well-formed JSON, but the amount is a string
                created = refund.created()
                created["data"]["amount"] = str(created["data"]["amount"])
                return httpx.Response(200, json=created)
            case _:
                return httpx.Response(200, content=b'{"status":true,"message":"Refund has been queued","data":{',
                                      headers={"content-type": "application/json"})

    def _list_refunds(self, request: httpx.Request) -> httpx.Response:
        charge = request.url.params.get("transaction", "")
        shown = [r for r in self.refunds if charge in (str(r.transaction_id), r.reference)] if self.lists_refunds \
            else []
        page = int(request.url.params.get("page", "1"))
        meta = {"total": len(shown), "skipped": 0, "perPage": 100, "page": page, "pageCount": self.list_pages}
        return httpx.Response(200, json={"status": True, "message": "Refunds retrieved",
                                         "data": [r.list_item() for r in reversed(shown)], "meta": meta})

    def _fetch_refund(self, request: httpx.Request, refund_id: str) -> httpx.Response:
        found = next((r for r in self.refunds if r.id == int(refund_id)), None)
        if found is None:
            return httpx.Response(404, json={"status": False, "message": "Refund not found"})
        return httpx.Response(200, json={"status": True, "message": "Refund retrieved", "data": found.fetched()})


@dataclass
class ServiceInTestMode:
    app: FastAPI
    client: httpx.AsyncClient
    paystack: FakePaystack

    async def fund(self, admin: dict[str, str], investor: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """An app and one paid investment of NGN 5,000.00 in it; returns (payment, deposit)."""
        await put_app(self.client, admin)
        payment = await invest(self.client, investor, shares=5)
        verified = await self.client.post(f"/v1/payments/{payment['reference']}/verify", headers=investor)
        assert verified.status_code == 200 and verified.json()["status"] == "success", verified.text
        return payment, await deposit_of(self.client, investor)

    async def rounds(self, count: int) -> None:
        """`count` passes of the worker over every queue."""
        for _ in range(count):
            await self.app.state.worker.run_once()

    async def post_webhook(self, event: str, data: dict[str, Any]) -> httpx.Response:
        body = json.dumps({"event": event, "data": data}, separators=(",", ":")).encode()
        return await self.client.post("/v1/webhooks/paystack", content=body, headers={
            "content-type": "application/json", "x-paystack-signature": sign(body, SECRET)})


async def open_test_mode_app(settings: Settings) -> AsyncIterator[ServiceInTestMode]:
    """The service in gateway mode `test`, its Paystack answered by FakePaystack."""
    application = create_app(settings)
    with mock_paystack(base_url=PAYSTACK_URL, assert_all_called=False) as router:
        paystack = FakePaystack(router)
        async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30), \
                httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url=BASE_URL) as client:
            yield ServiceInTestMode(application, client, paystack)


# ---- steps over HTTP, and time ------------------------------------------------------------------------


async def request_refund(client: httpx.AsyncClient, admin: dict[str, str], deposit_id: str,
                         amount: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": "investor asked"} | ({"amount": amount} if amount is not None else {})
    response = await client.post(f"/v1/escrow/transactions/{deposit_id}/refunds", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return response.json()


async def refund_seen(client: httpx.AsyncClient, headers: dict[str, str], refund_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/refunds/{refund_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def deposit_of(client: httpx.AsyncClient, investor: dict[str, str]) -> dict[str, Any]:
    listed = await client.get("/v1/escrow/transactions?type=deposit", headers=investor)
    assert listed.status_code == 200, listed.text
    [deposit] = listed.json()["items"]
    return deposit


async def in_flight(app: FastAPI, currency: str = "NGN") -> int:
    async with app.state.runtime.db.unit_of_work() as session:
        return await balance(session, accounts.refund_in_flight(currency))


async def time_passes(app: FastAPI) -> None:
    """Every lease and backoff of every refund runs out, as if the worker had been away for a while."""
    async with app.state.runtime.db.unit_of_work() as session:
        # Rows locked in one order first: two of these at once would otherwise update them in whatever order
        # each found them, and PostgreSQL would end one of them as a deadlock.
        await session.execute(select(Refund.id).order_by(Refund.id).with_for_update())
        await session.execute(update(Refund).values(available_at=utcnow() - timedelta(seconds=1)))


async def integrity_ok(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    report = (await client.get("/v1/admin/integrity", headers=admin)).json()
    assert report["ok"], report
