"""A delivery's request on the wire: the address it is pinned to, and `post` against a receiver on loopback
(the rest of the event tests answer it in process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from app.core.config import Settings
from app.events import delivery
from app.events.urls import Target

HEADERS = {"webhook-id": "evt_1", "content-type": "application/json"}


class TestPinned:
    def test_in_the_sandbox_the_url_is_sent_to_as_it_is(self) -> None:
        target = Target("http://receiver.test:9000/hooks", "receiver.test", 9000, None)
        assert delivery.pinned(target, HEADERS) == ("http://receiver.test:9000/hooks", HEADERS, None)

    def test_outside_it_the_checked_address_is_connected_to_and_the_site_named(self) -> None:
        target = Target("https://hooks.example.com/in?x=1", "hooks.example.com", 443, "93.184.216.34")
        url, headers, server_name = delivery.pinned(target, HEADERS)
        assert url == "https://93.184.216.34/in?x=1"
        assert headers == {**HEADERS, "host": "hooks.example.com"}
        assert server_name == "hooks.example.com"  # TLS: SNI and the certificate's name

    def test_an_ipv6_address_and_a_port(self) -> None:
        target = Target("https://hooks.example.com:8443/in", "hooks.example.com", 8443, "2606:2800:220:1::1")
        url, headers, _ = delivery.pinned(target, HEADERS)
        assert url == "https://[2606:2800:220:1::1]:8443/in"
        assert headers["host"] == "hooks.example.com:8443"


@dataclass
class LoopbackReceiver:
    """A raw HTTP/1.1 server on 127.0.0.1 answering each request with `answer`; records requests and
    connections."""

    answer: bytes = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body)
    connections: int = 0
    silent: bool = False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append((head, await reader.readexactly(length)))
                if self.silent:
                    await reader.read()  # until the client gives up and closes
                    return
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def loopback() -> AsyncIterator[tuple[LoopbackReceiver, str]]:
    receiver = LoopbackReceiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield receiver, f"http://127.0.0.1:{port}/hooks"
    finally:
        server.close()


async def test_the_body_and_headers_arrive_and_connections_are_kept_alive(
    loopback: tuple[LoopbackReceiver, str], settings: Settings
) -> None:
    receiver, url = loopback
    async with delivery.make_session(settings) as session:
        for _ in range(3):
            assert await delivery.post(session, url, HEADERS, '{"id": "evt_1"}', None) == 204
    head, body = receiver.requests[0]
    assert head.startswith(b"POST /hooks HTTP/1.1\r\n") and b"webhook-id: evt_1" in head
    assert body == b'{"id": "evt_1"}'
    assert (len(receiver.requests), receiver.connections) == (3, 1)


async def test_a_redirect_is_not_followed(loopback: tuple[LoopbackReceiver, str], settings: Settings) -> None:
    receiver, url = loopback
    receiver.answer = b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n"
    async with delivery.make_session(settings) as session:
        assert await delivery.post(session, url, HEADERS, "{}", None) == 302
    assert len(receiver.requests) == 1


async def test_a_long_answer_is_read_only_in_part(
    loopback: tuple[LoopbackReceiver, str], settings: Settings
) -> None:
    receiver, url = loopback
    size = 4 * delivery.ANSWER_BYTES_READ
    receiver.answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size
    async with delivery.make_session(settings) as session:
        assert await delivery.post(session, url, HEADERS, "{}", None) == 200
        assert await delivery.post(session, url, HEADERS, "{}", None) == 200
    assert receiver.connections == 2  # the unread rest cost the first connection


async def test_a_receiver_that_does_not_answer_times_out(
    loopback: tuple[LoopbackReceiver, str], make_settings: Callable[..., Settings]
) -> None:
    receiver, url = loopback
    receiver.silent = True
    async with delivery.make_session(make_settings(webhook_delivery_timeout_seconds=0.2)) as session:
        with pytest.raises(TimeoutError):
            await delivery.post(session, url, HEADERS, "{}", None)
