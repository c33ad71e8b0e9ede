"""A delivery's request on the wire: the address it is pinned to, and `post` against a receiver on loopback
(the rest of the event tests answer it in process)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.core.config import Settings
from app.events import delivery
from app.events.urls import Target
from tests.rawhttp import answer, raw_server, silent

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


async def test_the_body_and_headers_arrive_and_connections_are_kept_alive(settings: Settings) -> None:
    async with raw_server(answer(204)) as (receiver, base), delivery.make_session(settings) as session:
        for _ in range(3):
            assert await delivery.post(session, f"{base}/hooks", HEADERS, '{"id": "evt_1"}', None) == 204
    head, body = receiver.requests[0]
    assert head.startswith(b"POST /hooks HTTP/1.1\r\n") and b"webhook-id: evt_1" in head
    assert body == b'{"id": "evt_1"}'
    assert (len(receiver.requests), receiver.connections) == (3, 1)


async def test_a_redirect_is_not_followed(settings: Settings) -> None:
    redirect = answer(302, b"", "location: http://169.254.169.254/")
    async with raw_server(redirect) as (receiver, base), delivery.make_session(settings) as session:
        assert await delivery.post(session, f"{base}/hooks", HEADERS, "{}", None) == 302
    assert len(receiver.requests) == 1


async def test_a_long_answer_is_read_only_in_part(settings: Settings) -> None:
    long_answer = answer(200, b"x" * (4 * delivery.ANSWER_BYTES_READ))
    async with raw_server(long_answer) as (receiver, base), delivery.make_session(settings) as session:
        assert await delivery.post(session, f"{base}/hooks", HEADERS, "{}", None) == 200
        assert await delivery.post(session, f"{base}/hooks", HEADERS, "{}", None) == 200
    assert receiver.connections == 2  # the unread rest cost the first connection


async def test_a_receiver_that_does_not_answer_times_out(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(webhook_delivery_timeout_seconds=0.2)
    async with raw_server(silent) as (_, base), delivery.make_session(settings) as session:
        with pytest.raises(TimeoutError):
            await delivery.post(session, f"{base}/hooks", HEADERS, "{}", None)
