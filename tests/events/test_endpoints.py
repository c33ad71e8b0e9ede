"""Webhook endpoints as an admin manages them (the secret shown once, encrypted at rest, rotated), the
signature against the Standard Webhooks test vector, and the event lists for readers who poll."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from app.events import service, signing
from app.events.catalogue import EVENT_TYPES
from app.events.record import emit
from app.models import WebhookEndpoint
from tests.events.support import Auth, Receiver, deliver, register


def test_signatures_follow_the_standard_webhooks_test_vector() -> None:
    """The vector the Standard Webhooks specification publishes, and the algorithm it documents."""
    secret, message_id, stamp = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = '{"test": 2432232314}'
    headers = signing.signed_headers(secret, message_id, body, datetime.fromtimestamp(stamp, UTC))
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == (message_id, str(stamp))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{message_id}.{stamp}.{body}".encode(), hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_new_secrets_are_random_standard_webhooks_secrets() -> None:
    secrets = {signing.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(s.startswith("whsec_") and len(base64.b64decode(s[6:])) == 32 for s in secrets)


async def test_the_secret_is_shown_once_stored_encrypted_and_rotated(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, receiver: Receiver
) -> None:
    admin = auth("admin-1", admin=True)
    endpoint = await register(client, admin, ["payout.paid", "payment.succeeded"])
    assert endpoint["events"] == ["payment.succeeded", "payout.paid"]
    shown = (await client.get(f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin)).json()
    assert shown["secret"] is None
    assert [e["secret"] for e in (await client.get("/v1/admin/webhook-endpoints", headers=admin)).json()["items"]] \
        == [None]
    async with app.state.runtime.db.unit_of_work() as session:
        stored = (await session.scalars(select(WebhookEndpoint))).one()
    assert endpoint["secret"] not in stored.secret_encrypted
    assert app.state.runtime.cipher.decrypt(stored.secret_encrypted) == endpoint["secret"]

    rotated = await client.patch(f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin,
                                 json={"rotate_secret": True, "events": ["*"], "description": "all"})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["secret"].startswith("whsec_") and new["secret"] != endpoint["secret"]
    assert (new["events"], new["description"]) == (["*"], "all")
    async with app.state.runtime.db.unit_of_work() as session:
        emit(session, "deposit.held", {"id": "esc_1"})
    await deliver(app)
    [(_, headers, body)] = receiver.received
    assert Webhook(new["secret"]).verify(body, headers)["type"] == "deposit.held"


async def test_an_endpoint_filter_takes_known_types_only(client: httpx.AsyncClient, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    for events in (["payment.succeeded", "nope.nothing"], [], ["*", "payout.paid"], ["x" * 100]):
        response = await client.post("/v1/admin/webhook-endpoints", headers=admin,
                                     json={"url": "http://receiver.test/", "events": events})
        assert response.status_code == 422, (events, response.text)
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_events_are_listed_oldest_first_after_a_cursor_and_by_whom_they_are_about(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    ids = []
    for index in range(5):
        async with app.state.runtime.db.unit_of_work() as session:
            ids.append(emit(session, "payout.paid" if index % 2 else "payment.failed", {"n": index},
                            subjects=["investor-1" if index < 3 else "investor-2"]))
    admin = auth("admin-1", admin=True)
    first = (await client.get("/v1/events?limit=2", headers=admin)).json()
    assert [e["id"] for e in first["items"]] == ids[:2] and first["next_cursor"] == ids[1]
    rest = (await client.get(f"/v1/events?after={first['next_cursor']}", headers=admin)).json()
    assert [e["id"] for e in rest["items"]] == ids[2:] and rest["next_cursor"] is None
    assert [e["data"]["n"] for e in rest["items"]] == [2, 3, 4]
    typed = (await client.get("/v1/events?type=payout.paid", headers=admin)).json()
    assert [e["id"] for e in typed["items"]] == [ids[1], ids[3]]
    mine = (await client.get("/v1/events/me", headers=auth("investor-1"))).json()
    assert [e["id"] for e in mine["items"]] == ids[:3]
    theirs = (await client.get(f"/v1/events/me?after={ids[3]}", headers=auth("investor-2"))).json()
    assert [e["id"] for e in theirs["items"]] == [ids[4]]
    assert (await client.get("/v1/events/me", headers=auth("stranger"))).json()["items"] == []
    async with app.state.runtime.db.unit_of_work() as session:
        assert await service.delivery_backlog(session) == (5, 0)  # no endpoint: nothing pending once fanned out


def test_docs_events_md_lists_every_event_type() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    assert [name for name in EVENT_TYPES if f"| `{name}` |" not in text] == []
