"""`python -m app sandbox`: the sandbox as a process of its own, with no database, sending its signed
webhooks to another process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.gateway.sandbox import MOUNT_PREFIX
from app.gateway.sandbox.server import create_sandbox_app
from app.gateway.signature import verify_signature

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk_test_standalone_sandbox_0123456789"
STARTUP_SECONDS = 30.0
# Settings the sandbox process must not pick up from the developer's shell
SETTINGS_ENV = ("PAYMENT_GATEWAY_MODE", "PAYSTACK_SECRET_KEY", "PUBLIC_BASE_URL", "DATABASE_URL",
                "SANDBOX_WEBHOOK_RETRY_DELAYS", "SANDBOX_SETTLE_DELAY_SECONDS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A bare HTTP endpoint on loopback that answers 200 and keeps what it was sent."""

    port: int = 0
    deliveries: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, path, _ = (await reader.readline()).decode().split(" ", 2)
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            await self.deliveries.put(Delivery(path, headers, body))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    receiving = Receiver()
    server = await asyncio.start_server(receiving.handle, "127.0.0.1", 0)
    receiving.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiving


@contextlib.asynccontextmanager
async def sandbox_process(tmp_path: Path, env: dict[str, str], *args: str) -> AsyncIterator[httpx.AsyncClient]:
    """`python -m app sandbox --port P *args`, run outside the checkout (no .env file) with a
    DATABASE_URL no database can be opened at: the sandbox must never touch one."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    clean.update(env, PYTHONPATH=str(ROOT), PAYSTACK_SECRET_KEY=SECRET,
                 DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'no such directory' / 'db.sqlite'}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "sandbox", "--port", str(port), *args, cwd=tmp_path, env=clean,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            async with asyncio.timeout(STARTUP_SECONDS):
                while True:
                    if process.returncode is not None:
                        assert process.stderr is not None
                        pytest.fail(f"the sandbox exited: {(await process.stderr.read()).decode()}")
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            yield http
    finally:
        if process.returncode is None:
            process.terminate()
        # uvicorn shuts down, then re-raises the SIGTERM it caught
        assert await asyncio.wait_for(process.wait(), timeout=30) in (0, -signal.SIGTERM)


@pytest.mark.parametrize("explicit_url", [True, False], ids=["--webhook-url", "PUBLIC_BASE_URL"])
async def test_sandbox_process_charges_and_sends_signed_webhooks(tmp_path: Path, explicit_url: bool) -> None:
    async with receiver() as service:
        service_url = f"http://127.0.0.1:{service.port}"
        if explicit_url:
            env, args, webhook_path = {}, ("--webhook-url", f"{service_url}/hooks/in"), "/hooks/in"
        else:
            env, args, webhook_path = {"PUBLIC_BASE_URL": service_url}, (), "/v1/webhooks/paystack"
        async with sandbox_process(tmp_path, env, *args) as sandbox:
            key = {"Authorization": f"Bearer {SECRET}"}
            refused = await sandbox.get(f"{MOUNT_PREFIX}/transaction/verify/nothing",
                                        headers={"Authorization": "Bearer sk_test_other"})
            assert refused.status_code == 401

            started = await sandbox.post(f"{MOUNT_PREFIX}/transaction/initialize", headers=key,
                                         json={"email": "a@example.com", "amount": 500000, "reference": "ref-1"})
            assert started.status_code == 200, started.text
            checkout = started.json()["data"]["authorization_url"]
            # checkout links lead to this process, not to the service its webhooks go to
            own_checkout = f"http://127.0.0.1:{sandbox.base_url.port}{MOUNT_PREFIX}/checkout/"
            assert checkout.startswith(own_checkout)
            assert (await sandbox.get(checkout)).status_code == 200

            settled = await sandbox.post(f"{MOUNT_PREFIX}/_control/charges/ref-1", json={"outcome": "success"})
            assert settled.status_code == 200, settled.text
            delivery = await asyncio.wait_for(service.deliveries.get(), timeout=10)

            verified = await sandbox.get(f"{MOUNT_PREFIX}/transaction/verify/ref-1", headers=key)
            assert verified.json()["data"]["status"] == "success"

    assert delivery.path == webhook_path
    assert verify_signature(delivery.body, delivery.headers.get("x-paystack-signature"), SECRET)
    event = json.loads(delivery.body)
    assert event["event"] == "charge.success"
    assert event["data"]["reference"] == "ref-1"
    assert event["data"]["amount"] == 500000


def test_sandbox_app_refuses_a_live_key() -> None:
    live = Settings(_env_file=None, payment_gateway_mode="live", paystack_secret_key="sk_live_0123456789",
                    jwt_secret="a-long-random-production-secret-0123456789",
                    encryption_keys="cHJvZHVjdGlvbi1mZXJuZXQta2V5LTAxMjM0NTY3ODk=")
    with pytest.raises(ValueError, match="sk_live_"):
        create_sandbox_app(live, public_base_url="http://127.0.0.1:8001", webhook_url="http://127.0.0.1:8000/hook")



async def test_a_caller_gone_before_its_body_arrived_is_no_error() -> None:
    """A service killed while sending `POST /transaction/initialize`: the sandbox records nothing and
    raises nothing (uvicorn would log it as an exception in the application)."""
    settings = Settings(_env_file=None, paystack_secret_key=SECRET)
    app = create_sandbox_app(settings, public_base_url="http://127.0.0.1:8001", webhook_url="http://127.0.0.1:9/h")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": f"{MOUNT_PREFIX}/transaction/initialize", "raw_path": b"", "root_path": "", "query_string": b"",
        "headers": [(b"authorization", f"Bearer {SECRET}".encode()), (b"content-type", b"application/json"),
                    (b"content-length", b"64")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8001),
    }
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 499
    assert app.state.sandbox.transactions == {}
