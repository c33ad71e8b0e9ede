"""No configuration traps around the service's address: PUBLIC_BASE_URL derived from PORT by every process (API and
worker alike) when left empty, `serve --port` standing for PORT, a warning when the sandbox's address names another
port than the one served, and the URL that failed named by gateway errors and /readyz."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app import __main__ as cli
from app.core.config import Settings, get_settings
from app.gateway.client import PaystackClient
from app.gateway.errors import GatewayNotReached
from app.main import create_app
from tests.conftest import BASE_URL
from tests.helpers import put_app

ROOT = Path(__file__).resolve().parents[2]
CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_an_empty_public_base_url_is_derived_from_port() -> None:
    settings = Settings(_env_file=None, public_base_url="", port=8123)

    assert settings.public_base_url == "http://127.0.0.1:8123"
    assert settings.public_base_url_derived
    assert settings.gateway_base_url == "http://127.0.0.1:8123/sandbox/paystack"
    explicit = Settings(_env_file=None, public_base_url="https://pay.example.com/", port=8123)
    assert (explicit.public_base_url, explicit.public_base_url_derived) == ("https://pay.example.com", False)


def test_api_and_worker_derive_the_same_address_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read `get_settings()`: with PORT in the environment (as `serve --port` sets it), the same URL."""
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("PORT", "8456")
    get_settings.cache_clear()
    try:
        assert get_settings().gateway_base_url == "http://127.0.0.1:8456/sandbox/paystack"
    finally:
        get_settings.cache_clear()


def test_env_example_does_not_fix_the_address() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()

    assert "PUBLIC_BASE_URL=" in lines  # empty: derived
    assert "PORT=8000" in lines


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """`serve` up to uvicorn.run, which is recorded instead of run."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: calls.append({"app": app, **options}))
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)  # keeps pytest's log capture in place
    for name in ("PORT", "PUBLIC_BASE_URL", "PAYMENT_GATEWAY_MODE"):
        monkeypatch.setenv(name, "")  # recorded, so the PORT that serve sets is undone after the test
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def test_serve_port_stands_for_port_so_the_sandbox_address_follows_it(
    served: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    cli.serve(get_settings(), "127.0.0.1", 8765, 1)

    assert served[0]["port"] == 8765
    assert get_settings().public_base_url == "http://127.0.0.1:8765"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_serve_warns_when_the_sandbox_address_names_another_port(
    served: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None, public_base_url="http://127.0.0.1:8000")
    with caplog.at_level(logging.WARNING, logger="app"):
        cli.serve(settings, "127.0.0.1", 8000, 1)
        assert not caplog.records
        cli.serve(settings, "127.0.0.1", 8001, 1)

    [warning] = caplog.records
    assert warning.getMessage().startswith(
        "PUBLIC_BASE_URL is http://127.0.0.1:8000 but this server listens on port 8001")


@pytest.mark.parametrize(("mode", "url", "port", "warned"), [
    ("sandbox", "", 8001, False),  # derived from the port served
    ("sandbox", "http://127.0.0.1:8001", 8001, False),
    ("sandbox", "https://pay.example.com", 443, False),  # the scheme's port
    ("sandbox", "https://pay.example.com", 8000, True),
    ("test", "http://127.0.0.1:8000", 8001, False),  # no sandbox: its links are not served here
])
def test_the_address_mismatch_warning(mode: str, url: str, port: int, warned: bool) -> None:
    settings = Settings(_env_file=None, payment_gateway_mode=mode, public_base_url=url, port=port,
                        jwt_secret="x" * 40)

    assert (cli.sandbox_address_mismatch(settings, port) is not None) is warned


async def test_gateway_errors_name_the_url() -> None:
    client = PaystackClient(base_url=f"{CLOSED_PORT_URL}/sandbox/paystack", secret_key="sk_test_x", max_retries=0)
    try:
        with pytest.raises(GatewayNotReached) as raised:
            await client.verify_transaction("ref-1")
    finally:
        await client.aclose()

    assert f"could not connect to Paystack at {CLOSED_PORT_URL}/sandbox/paystack/:" in raised.value.message


async def test_a_payment_whose_gateway_cannot_be_reached_names_its_url(
    make_settings: Callable[..., Settings], auth: Callable[..., dict[str, str]]
) -> None:
    """The trap of issue 12: a sandbox address on another port. The 502 says where the service looked."""
    settings = make_settings(public_base_url=CLOSED_PORT_URL)
    application = create_app(settings)  # not loopback: over a socket, as a served process would
    async with LifespanManager(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(application), base_url=BASE_URL
    ) as http:
        await put_app(http, auth("admin-1", admin=True))
        body = {"payment_type": "investment", "app_id": "app-1", "email": "i@example.com", "currency": "NGN",
                "shares": 1}
        response = await http.post("/v1/payments", json=body, headers=auth("investor-1"))
        ready = await http.get("/readyz")

    assert response.status_code == 502, response.text
    assert f"{CLOSED_PORT_URL}/sandbox/paystack" in response.json()["error"]["details"]["gateway_message"]
    assert ready.status_code == 503 and ready.json()["failing"] == ["gateway"]
    [gateway] = [check for check in ready.json()["checks"] if check["name"] == "gateway"]
    assert gateway["details"]["url"] == f"{CLOSED_PORT_URL}/sandbox/paystack"
