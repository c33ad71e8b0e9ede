"""Account numbers and authorization codes never land in a log line or a text column in clear.

The service runs as in production (`python -m app serve`: uvicorn's own access log, the in-process
worker, the sandbox gateway reached over a socket) with everything logged (DEBUG). Whole flows that
carry a bank account number and card authorization codes go through it over HTTP; then every line
the process wrote and every text column of its database are searched for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import JSON, String, Text, create_engine, inspect, select, type_coerce

from app.core.config import Settings
from app.core.security import issue_token
from app.models import Base
from tests.helpers import APPROVERS, OWNER, invest, put_app

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_NUMBER = "3057918264"
SECRET_KEY = "sk_test_no_sensitive_data_00000000000000000000"
JWT_SECRET = "no-sensitive-data-test-jwt-secret-0123456789abcdef"
STARTUP_SECONDS = 30.0
FLOW_SECONDS = 20.0


@dataclass
class Server:
    base_url: str
    log: Path
    database: Path
    process: asyncio.subprocess.Process

    async def stop(self) -> None:
        """SIGTERM: uvicorn shuts down gracefully (lifespan included) and the log is complete."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    port = _free_port()
    database, log = tmp_path / "service.db", tmp_path / "server.log"
    # A clean environment and a working directory without a `.env`: only these settings apply.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "ALEMBIC_CONFIG": str(ROOT / "alembic.ini"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "PAYMENT_GATEWAY_MODE": "sandbox",
        "PAYSTACK_SECRET_KEY": SECRET_KEY,
        "JWT_SECRET": JWT_SECRET,
        "LOG_LEVEL": "DEBUG",
        "RATE_LIMIT_ENABLED": "false",
        "WORKER_POLL_INTERVAL_SECONDS": "0.1",
        "SANDBOX_SETTLE_DELAY_SECONDS": "0.05",
        "SANDBOX_WEBHOOK_RETRY_DELAYS": "0.2,0.5,1",
    }
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port),
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
        )
    running = Server(f"http://127.0.0.1:{port}", log, database, process)
    try:
        await _wait_healthy(running)
        yield running
    finally:
        await running.stop()


async def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as http:
        while time.monotonic() < deadline:
            if server.process.returncode is not None:
                pytest.fail(f"the server exited ({server.process.returncode}):\n{server.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    pytest.fail(f"the server did not become healthy:\n{server.log.read_text()[-3000:]}")


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    """Poll the API until the worker has done what `check` looks for."""
    deadline = time.monotonic() + FLOW_SECONDS
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _items(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await http.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _run_flows(http: httpx.AsyncClient, auth: Callable[..., dict[str, str]]) -> list[str]:
    """Payout account, three paid investments, a release paid out, a refund and a chargeback.
    Returns the references of the payments."""
    admin, owner = auth("admin-1", admin=True), auth(OWNER)
    investors = [auth(f"investor-{i}") for i in range(3)]
    await put_app(http, admin)

    # the owner's payout account: a bank resolve (the number in a query string) and a transfer recipient;
    # first at a bank the gateway does not know, which it refuses
    refused = await http.put("/v1/payout-accounts/me", headers=owner,
                             json={"bank_code": "999", "account_number": ACCOUNT_NUMBER, "currency": "NGN"})
    assert refused.status_code >= 400, refused.text
    registered = await http.put("/v1/payout-accounts/me", headers=owner,
                                json={"bank_code": "057", "account_number": ACCOUNT_NUMBER, "currency": "NGN"})
    assert registered.status_code == 200, registered.text
    assert registered.json()["account_number_last4"] == ACCOUNT_NUMBER[-4:]

    # paid at the sandbox's checkout: each charge.success webhook carries an authorization code
    payments = [await invest(http, investor, shares=5) for investor in investors]
    for payment in payments:
        paid = await http.post(payment["payment_url"], data={"outcome": "success"})
        assert paid.status_code == 200, paid.text

    async def all_paid() -> bool:
        return all([(await http.get(f"/v1/payments/{p['reference']}", headers=investor)).json()["status"] == "success"
                    for p, investor in zip(payments, investors, strict=True)])

    await _until("the charges to be credited", all_paid)

    # a milestone released and paid out: a transfer to the account, and its transfer.success webhook
    milestone = await http.post("/v1/apps/app-1/milestones", headers=owner,
                                json={"title": "first", "release_percentage": "25"})
    assert milestone.status_code == 201, milestone.text
    milestone_id = milestone.json()["id"]
    completed = await http.post(f"/v1/milestones/{milestone_id}/complete", headers=owner, json={"evidence": "done"})
    assert completed.status_code == 200, completed.text
    release = await http.post("/v1/escrow/releases", headers=owner, json={"milestone_id": milestone_id})
    assert release.status_code == 201, release.text
    release_id = release.json()["id"]
    for approver in APPROVERS:
        approved = await http.post(f"/v1/escrow/releases/{release_id}/approvals", headers=auth(approver),
                                   json={"decision": "approve"})
        assert approved.status_code == 200, approved.text
    executed = await http.post(f"/v1/escrow/releases/{release_id}/execute", headers=admin)
    assert executed.status_code == 200, executed.text

    async def paid_out() -> bool:
        return [p["status"] for p in await _items(http, "/v1/payouts/me", owner)] == ["paid"]

    await _until("the payout to be paid", paid_out)

    # an escrow refund of the second investment: refund.processed
    [deposit] = await _items(http, "/v1/escrow/transactions?type=deposit", investors[1])
    refund = await http.post(f"/v1/escrow/transactions/{deposit['id']}/refunds", headers=admin,
                             json={"amount": "1000.00", "reason": "investor asked"})
    assert refund.status_code == 201, refund.text

    async def refunded() -> bool:
        return [t["status"] for t in await _items(http, "/v1/escrow/transactions?type=refund", investors[1])] \
            == ["processed"]

    await _until("the refund to be processed", refunded)

    # a chargeback on the third: its webhook carries the whole transaction, authorization included
    opened = await http.post(f"/sandbox/paystack/_control/disputes/{payments[2]['reference']}",
                             json={"action": "open"})
    assert opened.status_code == 200, opened.text

    async def frozen() -> bool:
        summary = (await http.get("/v1/apps/app-1/escrow", headers=admin)).json()["items"][0]
        return bool(summary["frozen"] != "0.00")

    await _until("the chargeback to freeze the deposit", frozen)
    return [p["reference"] for p in payments]


async def _authorization_codes(http: httpx.AsyncClient, references: list[str]) -> list[str]:
    """What the sandbox issued, asked the way the service asks Paystack."""
    codes = []
    for reference in references:
        verified = await http.get(f"/sandbox/paystack/transaction/verify/{reference}",
                                  headers={"Authorization": f"Bearer {SECRET_KEY}"})
        assert verified.status_code == 200, verified.text
        code = verified.json()["data"]["authorization"]["authorization_code"]
        assert code.startswith("AUTH_")
        codes.append(code)
    return codes


def _stored_text(database: Path) -> dict[str, list[str]]:
    """`table.column` -> every value, as stored, of each text and JSON column the models declare."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            modelled = {table.name for table in Base.metadata.sorted_tables}
            assert set(inspect(connection).get_table_names()) - modelled <= {"alembic_version"}
            stored: dict[str, list[str]] = {}
            for table in Base.metadata.sorted_tables:
                textual = [column for column in table.columns if isinstance(column.type, String | JSON)]
                if not textual:
                    continue
                rows = connection.execute(select(*(type_coerce(column, Text) for column in textual))).all()
                for index, column in enumerate(textual):
                    stored[f"{table.name}.{column.name}"] = [row[index] for row in rows if row[index] is not None]
            return stored
    finally:
        engine.dispose()


@pytest.mark.starts_first
async def test_no_account_number_or_authorization_code_in_logs_or_columns(server: Server) -> None:
    settings = Settings(_env_file=None, jwt_secret=JWT_SECRET)

    def auth(user_id: str, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(settings, user_id, ['admin'] if admin else [])}"}

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        references = await _run_flows(http, auth)
        codes = await _authorization_codes(http, references)
    await server.stop()
    sensitive = {ACCOUNT_NUMBER: "account number", **{code: "authorization code" for code in codes}}

    lines = server.log.read_text().splitlines()
    # the log is the real one: uvicorn's access lines for the sandbox's own route, the client's request lines
    assert any('"GET /sandbox/paystack/bank/resolve' in line for line in lines)
    assert any("HTTP Request: GET" in line and "/bank/resolve" in line for line in lines)
    stored = _stored_text(server.database)
    assert {"charge.success", "transfer.success", "refund.processed", "charge.dispute.create"} \
        <= set(stored["webhook_events.event"])
    assert set(stored["webhook_events.status"]) == {"processed"}  # the handlers work with what is stored
    assert stored["payout_accounts.account_number_encrypted"]  # kept, but encrypted

    leaked = [f"{what} in the log: {line[:300]}" for line in lines
              for value, what in sensitive.items() if value in line]
    leaked += [f"{what} in {column}: {text[:300]}" for column, texts in stored.items() for text in texts
               for value, what in sensitive.items() if value in text]
    assert not leaked, "\n".join(leaked)
