"""A Python client generated from a running server's /openapi.json by openapi-python-client, used as generated
(no hand edits: an edit it would need is a fault of the schema), runs the sandbox flow: an admin creates an app,
an investor starts an investment, pays at the sandbox's checkout, verifies the payment and holds the shares.

The server is `python -m app serve` on a free loopback port, in sandbox mode, on a SQLite file of the test's own.
Skipped, with the reason, when openapi-python-client is not installed (it is in the `test` extras).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.security import issue_token

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "payment_service_client"
JWT_SECRET = "generated-client-test-secret-0123456789"
# The environment the server must not inherit from the caller's (the suite's own settings, another database).
DROPPED = ("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "TEST_REDIS_URL", "PUBLIC_BASE_URL",
           "PAYSTACK_SECRET_KEY", "PAYSTACK_BASE_URL", "JWT_ALGORITHM", "JWT_PUBLIC_KEY")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The service in sandbox mode on a free loopback port; its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in DROPPED}
    env.update({
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'service.db'}",
        "PAYMENT_GATEWAY_MODE": "sandbox",
        "PUBLIC_BASE_URL": base,
        "WORKER_IN_PROCESS": "true",
        "JWT_SECRET": JWT_SECRET,
        "LOG_LEVEL": "WARNING",
    })
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}): "
                                   f"{(tmp_path / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become healthy within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def generate_client(base: str, into: Path) -> Any:
    """The generated package, imported; fails on any warning of the generator (a part it could not generate)."""
    generator = Path(sys.executable).parent / "openapi-python-client"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(generator), "generate", "--url", f"{base}/openapi.json", "--meta", "none",
         "--output-path", str(into / PACKAGE)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output and "Error" not in output, output
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(into))


@pytest.mark.skipif(importlib.util.find_spec("openapi_python_client") is None,
                    reason="openapi-python-client is not installed (pip install -e '.[test]' installs it)")
def test_a_generated_client_runs_the_sandbox_flow(server: str, tmp_path: Path) -> None:
    client_package = generate_client(server, tmp_path)
    api = importlib.import_module(f"{PACKAGE}.api")
    models = importlib.import_module(f"{PACKAGE}.models")
    upsert_app = importlib.import_module(f"{api.__name__}.apps.upsert_app")
    create_payment = importlib.import_module(f"{api.__name__}.payments.create_payment")
    verify_payment = importlib.import_module(f"{api.__name__}.payments.verify_payment")
    my_holdings = importlib.import_module(f"{api.__name__}.shares.my_holdings")
    settings = Settings(_env_file=None, jwt_secret=JWT_SECRET, payment_gateway_mode="sandbox")

    def as_user(user: str, roles: list[str]) -> Any:
        return client_package.AuthenticatedClient(base_url=server, token=issue_token(settings, user, roles),
                                                  raise_on_unexpected_status=True)

    admin, investor = as_user("admin-1", ["admin"]), as_user("investor-1", [])

    app = upsert_app.sync("app-1", client=admin, body=models.AppUpsert(
        name="Acme Robotics", owner_id="owner-1", currency=models.Currency.NGN, share_price="1000.00",
        total_shares=1000))
    assert isinstance(app, models.AppOut), app
    assert (app.shares_available, app.currency) == (1000, models.Currency.NGN)

    payment = create_payment.sync(client=investor, idempotency_key="generated-client-1", body=models.PaymentCreate(
        payment_type=models.PaymentCreatePaymentType.INVESTMENT, app_id="app-1", email="investor@example.com",
        currency=models.Currency.NGN, shares=3))
    assert isinstance(payment, models.PaymentOut), payment
    assert (payment.status, payment.amount) == (models.PaymentOutStatus.PENDING, "3000.00")

    # The customer's side: the sandbox's checkout page (not part of the API, so not in the client).
    checkout = httpx.post(payment.payment_url, data={"outcome": "success"}, timeout=30)
    assert checkout.status_code in (200, 303), checkout.text

    verified = verify_payment.sync(payment.reference, client=investor)
    assert isinstance(verified, models.PaymentOut), verified
    assert verified.status == models.PaymentOutStatus.SUCCESS

    holdings = my_holdings.sync(client=investor)
    assert isinstance(holdings, models.HoldingsOut), holdings
    assert [(holding.app_id, holding.shares) for holding in holdings.items] == [("app-1", 3)]

    refused = create_payment.sync_detailed(client=as_user("investor-2", []), body=models.PaymentCreate(
        payment_type=models.PaymentCreatePaymentType.INVESTMENT, app_id="no-such-app", email="i@example.com",
        currency=models.Currency.NGN, shares=1))
    assert refused.status_code == 404
    assert isinstance(refused.parsed, models.Error)
    assert refused.parsed.error.code == models.ErrorBodyCode.NOT_FOUND
