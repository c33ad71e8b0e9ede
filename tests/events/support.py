"""What the event tests share: an in-process receiver the worker's deliveries reach, a stub resolver, and
steps to register an endpoint and run the deliveries to the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.events import delivery, urls
from app.models import OutboundEvent, WebhookDelivery

Auth = Callable[..., dict[str, str]]
RECEIVER_URL = "http://receiver.test/hooks"


@dataclass
class Receiver:
    """An ASGI receiver: records each request (path, headers, body) and answers the next status of
    `answers` (200 once they run out)."""

    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.received.append((scope["path"], {k.decode(): v.decode() for k, v in scope["headers"]}, body))
        status = self.answers.pop(0) if self.answers else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for _, headers, _ in self.received]


Post = Callable[[Any, str, dict[str, str], str, "str | None"], Awaitable[int]]


def asgi_post(receiver: Callable[..., Awaitable[None]]) -> Post:
    """`delivery.post` answered by an in-process ASGI app instead of over the network: the same URL (pinned
    address and all), headers and body reach it, and nothing leaves the process."""

    async def post(session: Any, url: str, headers: dict[str, str], body: str, server_name: str | None) -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(receiver), follow_redirects=False) as client:
            return (await client.post(url, headers=headers, content=body)).status_code

    return post


def stub_resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> dict[str, list[str]]:
    """Names resolve from `answers` (changeable during the test); an unknown name does not resolve."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return list(answers[host])

    monkeypatch.setattr(urls, "resolve", resolve)
    return answers


async def register(client: httpx.AsyncClient, admin: dict[str, str], events: list[str] | None = None,
                   url: str = RECEIVER_URL) -> dict[str, Any]:
    response = await client.post("/v1/admin/webhook-endpoints", headers=admin,
                                 json={"url": url, "events": events or ["*"], "description": "test receiver"})
    assert response.status_code == 201, response.text
    return response.json()


async def deliver(app: FastAPI) -> None:
    """Fan out and deliver everything due now, waiting for the lanes."""
    rt = app.state.runtime
    for _ in range(20):
        started = await delivery.deliver_events(rt)
        await delivery.settle(rt)
        if not started:
            return
    raise AssertionError("deliveries did not settle")


async def events_of(app: FastAPI, event_type: str | None = None) -> list[OutboundEvent]:
    async with app.state.runtime.db.unit_of_work() as session:
        stmt = select(OutboundEvent).order_by(OutboundEvent.id)
        if event_type:
            stmt = stmt.where(OutboundEvent.type == event_type)
        return list((await session.scalars(stmt)).all())


async def deliveries_of(app: FastAPI) -> list[WebhookDelivery]:
    async with app.state.runtime.db.unit_of_work() as session:
        return list((await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_id))).all())
