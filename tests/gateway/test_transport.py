"""The aiohttp transport under the Paystack client, against raw servers on loopback: answers arrive as httpx
responses, and each failure keeps its meaning (never sent, or outcome unknown), so that a call that is not
safe to repeat is still sent at most once."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from app.gateway.client import PaystackClient, tls_context
from app.gateway.errors import GatewayNotReached, GatewayTimeout, GatewayUnavailable
from app.gateway.transport import AiohttpTransport

Handler = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]  # head, body, writer -> keep going


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 whose `handler` answers (or does not); records every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[bytes, bytes]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                if not await self.handler(head, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[RawServer, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[RawServer, str]:
        raw = RawServer(handler)
        server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
        servers.append(server)
        return raw, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


def answer(status: int, body: bytes, *headers: str) -> Handler:
    async def handler(head: bytes, request_body: bytes, writer: asyncio.StreamWriter) -> bool:
        extra = "".join(f"{header}\r\n" for header in headers)
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body)
        await writer.drain()
        return True

    return handler


async def silent(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(5)
    return False


async def hang_up(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
    return False  # read the request, close without a word


def transport(max_connections: int = 4) -> AiohttpTransport:
    return AiohttpTransport(max_connections=max_connections, keepalive_expiry=30.0, tls=tls_context())


async def test_a_request_and_its_answer_cross_intact(serve: Callable[..., Awaitable[tuple[RawServer, str]]]) -> None:
    packed = gzip.compress(json.dumps({"status": True, "data": {"id": 7}}).encode())
    server, url = await serve(answer(200, packed, "content-encoding: gzip", "content-type: application/json",
                                     "x-request-id: abc"))
    async with httpx.AsyncClient(transport=transport(), base_url=url) as client:
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


async def test_a_hang_up_after_the_request_is_an_unknown_outcome_and_nothing_is_sent_again(
    serve: Callable[..., Awaitable[tuple[RawServer, str]]]
) -> None:
    server, url = await serve(hang_up)
    async with PaystackClient(base_url=url, secret_key="sk_test_t", max_retries=3) as gateway:
        with pytest.raises(GatewayUnavailable) as raised:
            await gateway.create_refund(transaction="ref-1", amount=1000, currency="NGN")
    assert not isinstance(raised.value, GatewayNotReached)  # it may have acted
    assert len(server.requests) == 1  # a refund is not safe to repeat: sent once


async def test_no_answer_in_time_is_a_timeout(serve: Callable[..., Awaitable[tuple[RawServer, str]]]) -> None:
    _, url = await serve(silent)
    async with PaystackClient(base_url=url, secret_key="sk_test_t", timeout=0.3, max_retries=0) as gateway:
        with pytest.raises(GatewayTimeout):
            await gateway.verify_transaction("ref-1")


async def test_waiting_for_a_free_connection_too_long_sends_nothing(
    serve: Callable[..., Awaitable[tuple[RawServer, str]]]
) -> None:
    server, url = await serve(silent)
    async with httpx.AsyncClient(transport=transport(max_connections=1), base_url=url,
                                 timeout=httpx.Timeout(5.0, pool=0.2)) as client:
        held = asyncio.create_task(client.get("/first"))
        await asyncio.sleep(0.1)  # the only connection is taken
        with pytest.raises(httpx.ConnectTimeout):
            await client.post("/second")
        held.cancel()
    assert [head.split(b" ")[1] for head, _ in server.requests] == [b"/first"]
