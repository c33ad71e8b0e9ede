"""Where endpoints may point: https only outside the sandbox, and never at a private, loopback, link-local or
otherwise non-public address there, checked when the endpoint is registered and again, on a fresh lookup, right
before each delivery (a name that resolved to a public address may later resolve to an internal one)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.core.config import Settings

MAX_URL_LENGTH = 2048

Resolver = Callable[[str, int], Awaitable[list[str]]]


class RefusedURL(ValueError):
    """The URL is not one this service sends events to; the message says why."""


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


# Replaced in tests, which must never look up or reach a real refused address.
resolve: Resolver = system_resolve


@dataclass(frozen=True)
class Target:
    """A checked URL: `address` is the public address to connect to (None in the sandbox: as the URL says)."""

    url: str
    host: str
    port: int
    address: str | None


def _parts(url: str, settings: Settings) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise RefusedURL(f"the URL must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RefusedURL("not a valid URL") from error
    allowed = ("https", "http") if settings.is_sandbox else ("https",)
    if parts.scheme not in allowed:
        raise RefusedURL("the URL must be https" + (" or http" if settings.is_sandbox else ""))
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise RefusedURL("the URL must name a host, without credentials")
    if parts.fragment:
        raise RefusedURL("the URL must not have a fragment")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def is_public(address: str) -> bool:
    """True for an address on the public internet: not private, loopback, link-local, multicast, reserved or
    unspecified (an IPv4 address mapped into IPv6 is judged as the IPv4 one)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check(url: str, settings: Settings) -> Target:
    """The URL checked for sending now (registration and every delivery call this): raises `RefusedURL`."""
    _, host, port = _parts(url, settings)
    if settings.is_sandbox:
        return Target(url, host, port, None)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolve(host, port)
        except OSError as error:
            raise RefusedURL(f"the host {host} could not be resolved") from error
    if not addresses:
        raise RefusedURL(f"the host {host} could not be resolved")
    refused = [address for address in addresses if not is_public(address)]
    if refused:
        raise RefusedURL(f"the host {host} resolves to a private, loopback or link-local address")
    return Target(url, host, port, addresses[0])
