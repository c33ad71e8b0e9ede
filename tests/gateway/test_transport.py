"""The aiohttp transport under the Paystack client, against raw servers on loopback: answers arrive as httpx
responses, and each failure keeps its meaning (never sent, or outcome unknown), so that a call that is not
safe to repeat is still sent at most once."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket

import httpx
import pytest

from app.gateway.client import PaystackClient, tls_context
from app.gateway.errors import GatewayNotReached, GatewayTimeout, GatewayUnavailable
from app.gateway.transport import AiohttpTransport
from tests.rawhttp import answer, hang_up, raw_server, silent


def transport(max_connections: int = 4) -> AiohttpTransport:
    return AiohttpTransport(max_connections=max_connections, keepalive_expiry=30.0, tls=tls_context())


async def test_a_request_and_its_answer_cross_intact() -> None:
    packed = gzip.compress(json.dumps({"status": True, "data": {"id": 7}}).encode())
    handler = answer(200, packed, "content-encoding: gzip", "content-type: application/json", "x-request-id: abc")
    async with raw_server(handler) as (server, url), \
            httpx.AsyncClient(transport=transport(), base_url=url) as client:
        first = await client.post("/refund", json={"transaction": "ref-1"}, headers={"Authorization": "Bearer sk"})
        second = await client.get("/transaction/verify/ref-1", params={"x": "1 2"})
    assert first.status_code == 200 and first.json() == {"status": True, "data": {"id": 7}}
    assert first.headers["x-request-id"] == "abc"
    (head, body), (second_head, _) = server.requests
    assert head.startswith(b"POST /refund HTTP/1.1\r\n") and b"authorization: Bearer sk" in head
    assert json.loads(body) == {"transaction": "ref-1"}
    assert second_head.startswith(b"GET /transaction/verify/ref-1?x=1+2 HTTP/1.1\r\n")
    assert second.status_code == 200


async def test_nothing_listening_is_not_reached() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with PaystackClient(base_url=f"http://127.0.0.1:{port}", secret_key="sk_test_t", max_retries=0) as gateway:
        with pytest.raises(GatewayNotReached):
            await gateway.verify_transaction("ref-1")


async def test_a_hang_up_after_the_request_is_an_unknown_outcome_and_nothing_is_sent_again() -> None:
    async with raw_server(hang_up) as (server, url), \
            PaystackClient(base_url=url, secret_key="sk_test_t", max_retries=3) as gateway:
        with pytest.raises(GatewayUnavailable) as raised:
            await gateway.create_refund(transaction="ref-1", amount=1000, currency="NGN")
    assert not isinstance(raised.value, GatewayNotReached)  # it may have acted
    assert len(server.requests) == 1  # a refund is not safe to repeat: sent once


async def test_no_answer_in_time_is_a_timeout() -> None:
    async with raw_server(silent) as (_, url), \
            PaystackClient(base_url=url, secret_key="sk_test_t", timeout=0.3, max_retries=0) as gateway:
        with pytest.raises(GatewayTimeout):
            await gateway.verify_transaction("ref-1")


async def test_waiting_for_a_free_connection_too_long_sends_nothing() -> None:
    async with raw_server(silent) as (server, url), \
            httpx.AsyncClient(transport=transport(max_connections=1), base_url=url,
                              timeout=httpx.Timeout(5.0, pool=0.2)) as client:
        held = asyncio.create_task(client.get("/first"))
        await asyncio.sleep(0.1)  # the only connection is taken
        with pytest.raises(httpx.ConnectTimeout):
            await client.post("/second")
        held.cancel()
    assert [head.split(b" ")[1] for head, _ in server.requests] == [b"/first"]
