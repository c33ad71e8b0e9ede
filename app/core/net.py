"""Client addresses and the webhook allow-list."""

from __future__ import annotations

import ipaddress

from fastapi import Request


def _in(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_ip(request: Request) -> str:
    """The peer address; behind trusted proxies, uvicorn's ProxyHeadersMiddleware (installed by
    create_app from TRUSTED_PROXIES) has already replaced it with the forwarded client."""
    return request.client.host if request.client else ""


def ip_allowed(address: str, allowlist: list[str]) -> bool:
    return not allowlist or _in(address, allowlist)
