"""Deliveries to webhook endpoints: signed the Standard Webhooks way, retried with backoff until they give up,
in event order per endpoint, duplicate-safe ids, and only to public https addresses outside the sandbox."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app import wiring
from app.events import delivery
from app.events.record import emit
from app.models import WebhookDelivery
from app.models.base import utcnow
from app.runtime import build_runtime
from app.worker import Worker
from tests.conftest import requires_postgres
from tests.events.support import (
    Auth,
    Receiver,
    asgi_post,
    deliver,
    deliveries_of,
    events_of,
    register,
    stub_resolver,
)
from tests.helpers import get_payment, invest, pay, put_app


async def make_due(app: FastAPI) -> None:
    """Time passes: every pending delivery is due now."""
    async with app.state.runtime.db.unit_of_work() as session:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.status == "pending")
                              .values(available_at=utcnow()))


async def emit_events(app: FastAPI, count: int, subject: str = "user-1") -> list[str]:
    """`count` events, each committed on its own."""
    ids = []
    for index in range(count):
        async with app.state.runtime.db.unit_of_work() as session:
            ids.append(emit(session, "payout.paid", {"id": f"po_{index}", "status": "paid"}, subjects=[subject]))
    return ids


async def test_the_sandbox_flow_delivers_a_verifiable_payment_succeeded(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    endpoint = await register(client, admin, ["payment.succeeded"])
    assert endpoint["secret"].startswith("whsec_")
    await put_app(client, admin)
    payment = await invest(client, investor)
    await pay(client, app, payment)
    await deliver(app)

    [(path, headers, body)] = receiver.received  # deposit.held and the rest are not subscribed
    assert path == "/hooks"
    sent = Webhook(endpoint["secret"]).verify(body, headers)
    assert sent["type"] == "payment.succeeded"
    assert sent["id"] == headers["webhook-id"]
    shown = await get_payment(client, investor, payment["reference"])
    assert (sent["data"]["reference"], sent["data"]["status"], sent["data"]["amount"]) == (
        shown["reference"], "success", shown["amount"])
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(body.replace(b'"success"', b'"failed"'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(body, {**headers, "webhook-id": "evt_other"})
    [row] = await deliveries_of(app)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)


async def test_a_500_is_retried_after_a_backoff_and_every_attempt_is_shown(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin = auth("admin-1", admin=True)
    endpoint = await register(client, admin)
    [event_id] = await emit_events(app, 1)
    receiver.answers = [500]
    before = utcnow()
    await deliver(app)
    [row] = await deliveries_of(app)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    wait = row.available_at - before
    assert timedelta(seconds=7.9) <= wait <= timedelta(seconds=13)  # 10 s, within the jitter
    await deliver(app)  # not due yet: nothing sent
    assert len(receiver.received) == 1

    await make_due(app)
    await deliver(app)
    assert receiver.ids() == [event_id, event_id]
    listed = (await client.get(f"/v1/admin/webhook-endpoints/{endpoint['id']}/deliveries", headers=admin)).json()
    [shown] = listed["items"]
    assert shown["status"] == "delivered" and shown["event_id"] == event_id
    assert [(a["status_code"], a["error"]) for a in shown["attempts"]] == [(500, "answered 500"), (200, None)]
    assert all(a["latency_ms"] >= 0 for a in shown["attempts"])


async def test_a_disabled_endpoint_receives_nothing(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin = auth("admin-1", admin=True)
    endpoint = await register(client, admin)
    patched = await client.patch(f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin,
                                 json={"disabled": True})
    assert patched.status_code == 200 and patched.json()["disabled"] is True
    await emit_events(app, 2)
    await deliver(app)
    assert receiver.received == []
    assert await deliveries_of(app) == []
    assert all(event.dispatched for event in await events_of(app))


def test_the_retry_schedule_doubles_with_jitter_and_spans_about_three_days() -> None:
    low = [delivery.next_wait(n, lambda: 0.0).total_seconds() for n in range(1, 16)]
    high = [delivery.next_wait(n, lambda: 1.0).total_seconds() for n in range(1, 16)]
    assert low[:4] == pytest.approx([8, 16, 32, 64])
    assert high[:4] == pytest.approx([12, 24, 48, 96])
    assert low[-1] == pytest.approx(0.8 * 6 * 3600) and high[-1] == pytest.approx(1.2 * 6 * 3600)
    # attempts that fit in three days at the nominal waits
    elapsed, attempts = 0.0, 1
    while elapsed + (wait := delivery.next_wait(attempts, lambda: 0.5).total_seconds()) <= 3 * 86400:
        elapsed, attempts = elapsed + wait, attempts + 1
    assert 20 <= attempts <= 24
    assert elapsed >= 2.5 * 86400


async def test_a_delivery_that_keeps_failing_is_failed_once_its_window_ends(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin = auth("admin-1", admin=True)
    endpoint = await register(client, admin)
    await emit_events(app, 1)
    receiver.answers = [503] * 10
    await deliver(app)
    async with app.state.runtime.db.unit_of_work() as session:  # the window ends before the next wait would
        await session.execute(update(WebhookDelivery).values(give_up_at=utcnow() + timedelta(seconds=5),
                                                             available_at=utcnow()))
    await deliver(app)
    [row] = await deliveries_of(app)
    assert (row.status, row.attempts, row.last_status_code) == ("failed", 2, 503)
    await make_due(app)
    await deliver(app)
    assert len(receiver.received) == 2  # failed for good: no more attempts

    receiver.answers = []
    retried = await client.post(f"/v1/admin/webhook-endpoints/{endpoint['id']}/deliveries/{row.id}/retry",
                                headers=admin)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    await deliver(app)
    [row] = await deliveries_of(app)
    assert row.status == "delivered"
    assert len({headers["webhook-id"] for _, headers, _ in receiver.received}) == 1
    assert len({body for _, _, body in receiver.received}) == 1  # the same bytes every time


async def test_each_endpoint_gets_its_events_in_commit_order(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin = auth("admin-1", admin=True)
    first = await register(client, admin)
    second = await register(client, admin, ["payout.paid"])
    ids = await emit_events(app, 12)
    await deliver(app)
    by_endpoint: dict[str, list[str]] = {}
    secrets = {first["secret"], second["secret"]}
    for _, headers, body in receiver.received:
        [secret] = [s for s in secrets if _verifies(s, body, headers)]
        by_endpoint.setdefault(secret, []).append(headers["webhook-id"])
    assert by_endpoint == {first["secret"]: ids, second["secret"]: ids}


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def test_the_webhook_id_is_the_event_id_on_every_attempt(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin = auth("admin-1", admin=True)
    await register(client, admin)
    [event_id] = await emit_events(app, 1)
    receiver.answers = [502]
    await deliver(app)
    await make_due(app)
    await deliver(app)
    assert receiver.ids() == [event_id, event_id]
    bodies = [json.loads(body) for _, _, body in receiver.received]
    assert bodies[0] == bodies[1] and bodies[0]["id"] == event_id
    assert set(bodies[0]) == {"id", "type", "created_at", "data"}


class TestOutsideTheSandbox:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {"payment_gateway_mode": "test", "paystack_secret_key": "sk_test_" + "1" * 40}

    async def test_http_and_private_addresses_are_refused_at_registration(
        self, client: httpx.AsyncClient, auth: Auth, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        admin = auth("admin-1", admin=True)
        stub_resolver(monkeypatch, {"hooks.example.com": ["93.184.216.34"], "inside.example.com": ["10.1.2.3"],
                                    "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
                                    "localhost": ["127.0.0.1"]})
        refused = ["http://hooks.example.com/x", "https://inside.example.com/x", "https://mixed.example.com/x",
                   "https://localhost/x", "https://127.0.0.1/x", "https://169.254.169.254/latest",
                   "https://[::1]/x", "https://[::ffff:10.0.0.1]/x", "https://192.168.1.1/x",
                   "https://nowhere.example.com/x", "ftp://hooks.example.com/x", "https://user:pw@hooks.example.com/"]
        for url in refused:
            response = await client.post("/v1/admin/webhook-endpoints", headers=admin,
                                         json={"url": url, "events": ["*"]})
            assert response.status_code == 422, (url, response.text)
            assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        accepted = await client.post("/v1/admin/webhook-endpoints", headers=admin,
                                     json={"url": "https://hooks.example.com/x", "events": ["*"]})
        assert accepted.status_code == 201, accepted.text
        moved = await client.patch(f"/v1/admin/webhook-endpoints/{accepted.json()['id']}", headers=admin,
                                   json={"url": "https://inside.example.com/x"})
        assert moved.status_code == 422

    async def test_a_name_that_resolves_inside_at_delivery_is_not_sent_to(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        admin = auth("admin-1", admin=True)
        names = stub_resolver(monkeypatch, {"hooks.example.com": ["93.184.216.34"]})
        await register(client, admin, url="https://hooks.example.com/in")
        await emit_events(app, 1)
        names["hooks.example.com"] = ["127.0.0.1"]  # rebound after registration
        await deliver(app)
        assert receiver.received == []
        [row] = await deliveries_of(app)
        assert row.status == "pending" and row.last_status_code is None
        assert "private, loopback or link-local" in (row.last_error or "")

        names["hooks.example.com"] = ["93.184.216.34"]
        await make_due(app)
        await deliver(app)
        [(path, headers, _)] = receiver.received
        assert (path, headers["host"]) == ("/in", "hooks.example.com")  # pinned address, the site's name


@requires_postgres
async def test_two_workers_deliver_each_event_once_per_endpoint(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin = auth("admin-1", admin=True)
    await register(client, admin)
    await register(client, admin, ["payout.paid"])
    ids = await emit_events(app, 30)
    workers = [app.state.runtime, build_runtime(app.state.runtime.settings, wiring.EXTENSIONS)]
    try:
        for _ in range(5):
            await asyncio.gather(*(delivery.deliver_events(rt) for rt in workers))
            await asyncio.gather(*(delivery.settle(rt) for rt in workers))
    finally:
        await workers[1].db.dispose()
        await workers[1].gateway.aclose()
    assert sorted(receiver.ids()) == sorted(ids * 2)
    assert [row.status for row in await deliveries_of(app)] == ["delivered"] * 60


async def test_a_slow_receiver_holds_up_neither_the_worker_nor_other_endpoints(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = auth("admin-1", admin=True)
    await register(client, admin, url="http://slow.test/hooks")
    await register(client, admin, url="http://fast.test/hooks")
    gate, fast_answered = asyncio.Event(), asyncio.Event()

    async def slow_or_fast(scope: dict, receive: object, send: object) -> None:
        slow = dict(scope["headers"])[b"host"] == b"slow.test"
        if slow:
            await gate.wait()
        await receiver(scope, receive, send)
        if not slow:
            fast_answered.set()

    monkeypatch.setattr(delivery, "post", asgi_post(slow_or_fast))
    [event_id] = await emit_events(app, 1)
    async with asyncio.timeout(5):
        await app.state.worker.drain()  # returns while the slow lane still waits
        await fast_answered.wait()  # the fast endpoint got its event meanwhile
    assert receiver.ids() == [event_id]
    gate.set()
    await delivery.settle(app.state.runtime)
    assert receiver.ids() == [event_id, event_id]


class TestAWindowOfDeliveriesInFlight:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, int]:
        return {"webhook_delivery_window": 3}

    async def test_they_start_in_event_order_and_never_more_than_the_window_at_once(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        admin = auth("admin-1", admin=True)
        await register(client, admin)
        gate = asyncio.Event()
        in_flight, most = 0, 0

        async def held(scope: dict, receive: object, send: object) -> None:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await gate.wait()
            await receiver(scope, receive, send)
            in_flight -= 1

        monkeypatch.setattr(delivery, "post", asgi_post(held))
        ids = await emit_events(app, 10)
        await delivery.deliver_events(app.state.runtime)
        for _ in range(50):  # the lane fills its window, then waits for an answer
            await asyncio.sleep(0.01)
        assert (in_flight, receiver.ids()) == (3, [])
        gate.set()
        await delivery.settle(app.state.runtime)
        assert most == 3
        assert receiver.ids() == ids  # answered in the order they were started: event order
        assert [row.status for row in await deliveries_of(app)] == ["delivered"] * 10

    async def test_a_slow_delivery_holds_up_only_its_own_place_in_the_window(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        admin = auth("admin-1", admin=True)
        await register(client, admin)
        ids = await emit_events(app, 8)
        gate, others_answered = asyncio.Event(), asyncio.Event()

        async def first_is_slow(scope: dict, receive: object, send: object) -> None:
            if dict(scope["headers"])[b"webhook-id"] == ids[0].encode():
                await gate.wait()
            await receiver(scope, receive, send)
            if len(receiver.received) == len(ids) - 1:
                others_answered.set()

        monkeypatch.setattr(delivery, "post", asgi_post(first_is_slow))
        await delivery.deliver_events(app.state.runtime)
        async with asyncio.timeout(5):
            await others_answered.wait()  # the seven after it went through the window's two other places
        assert receiver.ids() == ids[1:]
        gate.set()
        await delivery.settle(app.state.runtime)
        assert receiver.ids() == ids[1:] + ids[:1]
        assert [row.status for row in await deliveries_of(app)] == ["delivered"] * 8

    async def test_after_a_failure_no_more_are_started_and_those_in_flight_are_recorded(
        self, client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
    ) -> None:
        admin = auth("admin-1", admin=True)
        await register(client, admin)
        ids = await emit_events(app, 8)
        receiver.answers = [200, 500, 200]
        await delivery.deliver_events(app.state.runtime)
        await delivery.settle(app.state.runtime)
        # the first three were in flight together; the 500 ended the endpoint's turn
        assert receiver.ids() == ids[:3]
        rows = await deliveries_of(app)
        assert [row.status for row in rows[:3]] == ["delivered", "pending", "delivered"]
        assert rows[1].attempts == 1 and rows[1].available_at > utcnow()
        assert all(row.attempts == 0 for row in rows[3:])
        await deliver(app)  # the next pass: the rest, while the 500 waits for its retry
        assert receiver.ids() == ids[:3] + ids[3:]


async def test_a_pass_held_up_by_another_job_does_not_hold_up_deliveries(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = auth("admin-1", admin=True)
    await register(client, admin)
    busy, release, arrived = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def long_inbox(rt: object) -> int:  # a burst of webhooks keeps the inbox job going
        busy.set()
        await release.wait()
        return 0

    async def receive_and_tell(scope: dict, receive: object, send: object) -> None:
        await receiver(scope, receive, send)
        arrived.set()

    monkeypatch.setattr(delivery, "post", asgi_post(receive_and_tell))
    worker, stop = Worker(app.state.runtime, jobs=(long_inbox, delivery.deliver_events)), asyncio.Event()
    running = asyncio.create_task(worker.run_forever(stop))
    try:
        await busy.wait()
        [event_id] = await emit_events(app, 1)
        async with asyncio.timeout(5):
            await arrived.wait()  # while the pass is still in the other job
        assert receiver.ids() == [event_id]
    finally:
        release.set()
        stop.set()
        await running
