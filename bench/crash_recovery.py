"""The API and the worker SIGKILLed during a webhook load, then restarted: every paid payment is
credited exactly once, and the books agree with themselves and with the gateway.

On a PostgreSQL database of its own (a new name per run, migrated first, dropped at the end) it runs:
- the Paystack sandbox as a process of its own (`python -m app sandbox`), never killed: the gateway
  keeps its records through the crashes, and sends its signed webhooks to the API, retried on a
  compressed schedule while the API is down;
- the service in `test` mode pointed at that sandbox (PAYSTACK_BASE_URL): the API
  (`python -m app serve`, WORKER_IN_PROCESS=false) and one worker (`python -m app.worker`).

Load, over `--seconds`: `--payments` investments created at an even pace by a few investors, each
with an Idempotency-Key; up to 3 s later the payer settles the charge at the sandbox (success, or
failed for about one in ten), which sends charge.success; the bench also posts 0 to 2 signed
duplicates of that webhook at random moments, and asks verify for about a third of the payments, as
the payer's browser would. Every request is retried until answered, as Paystack and clients do.
Meanwhile the API and the worker are SIGKILLed `--kills` times each at moments drawn from `--seed`
(the last time both at once), each kill at least MIN_UPTIME_SECONDS after the process was ready,
and restarted after a pause of up to a second. After the load it waits (at most `--settle-timeout`
seconds) until every charge the sandbox made is credited, its webhook received and the inbox
empty, then checks:
- every charge the sandbox lists as successful is a `success` payment with one escrow deposit of its
  amount, one `deposit:` journal entry and one share issue of its shares;
- no other payment is `success`, deposited or issued shares; the app's escrow account holds the sum
  of the charges, each investor's holding and the app's issued shares the sum of their shares;
- no webhook event failed; GET /v1/admin/integrity is ok and GET /v1/admin/reconciliation over the
  run has no differences; no request was answered with a 5xx.

Prints a summary; exit status 1 on any violation (the processes' logs are then kept and named).

    python bench/crash_recovery.py           # 600 payments over 60 s, 4 kills of each process
    python bench/crash_recovery.py --ci      # the CI size: 80 payments over 12 s, 2 kills of each
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from common import ROOT, drop_database, free_port, fresh_database, wait_healthy

from app.core.config import Settings
from app.core.security import issue_token
from app.gateway.sandbox import MOUNT_PREFIX
from app.gateway.signature import sign
from app.ledger import accounts

APP_ID = "crash"
CURRENCY = "NGN"
INVESTORS = 12
FAILED_CHARGE_SHARE = 0.1
VERIFY_SHARE = 1 / 3
MAX_DUPLICATES = 2
DUPLICATE_DELAY_SECONDS = 2.0
# How long the payer takes at checkout: charges (and the sandbox's webhooks) also land while the API is down.
MAX_CHECKOUT_SECONDS = 3.0
# Paystack retries for days; here the sandbox retries every second for half a minute, longer than a
# restart takes on a busy machine, so that a webhook arrives about a second after the API is back.
SANDBOX_WEBHOOK_RETRY_DELAYS = ",".join(["1"] * 30)
MIN_UPTIME_SECONDS = 1.0
MAX_RESTART_PAUSE_SECONDS = 1.0
# A client's pause before sending again: doubling from the first to the last, so that a process coming
# back is not slowed by a crowd of retries.
RETRY_PAUSES_SECONDS = (0.1, 1.0)
# How long a request may go unanswered once the last restart is over and the load's time is up.
LOAD_GRACE_SECONDS = 30.0
STOP_SECONDS = 10.0
# The service's settings that make recovery fit in a run: a killed worker's claimed events and a killed
# request's Idempotency-Key are taken over after seconds, not a minute; a restarted worker asks the
# gateway about payments pending for more than a few seconds.
RECOVERY_SETTINGS = {
    "WORKER_LEASE_SECONDS": "3",
    "IDEMPOTENCY_LEASE_SECONDS": "3",
    "RECONCILE_PENDING_AFTER_SECONDS": "3",
    "WORKER_POLL_INTERVAL_SECONDS": "0.1",
}


class GaveUp(Exception):
    """A request still unanswered at the load's deadline."""


@dataclasses.dataclass(frozen=True)
class PlannedPayment:
    """One payment of the load, drawn from the seed before it starts."""

    start: float  # seconds after the load starts
    investor: int
    shares: int
    checkout_delay: float
    outcome: str  # what the payer chooses at checkout: success | failed
    duplicate_delays: tuple[float, ...]
    verify_delay: float | None


@dataclasses.dataclass
class Tally:
    created: int = 0
    replayed: int = 0  # creations answered from the Idempotency-Key's stored response
    in_progress: int = 0  # IDEMPOTENCY_IN_PROGRESS answers: a killed attempt still held the key
    charged: int = 0
    declined: int = 0
    duplicates: int = 0
    verifies: int = 0
    dropped: int = 0  # requests that got no answer (refused, or the server died answering) and were sent again
    server_errors: Counter[int] = dataclasses.field(default_factory=Counter)


@dataclasses.dataclass
class Kill:
    at: float  # seconds after the load started
    down: float  # seconds from the kill until the restarted process was ready


class Child:
    """One process of the run, restarted as the same command; its output goes to one log, appended."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, *,
                 health_url: str | None = None, ready_line: str | None = None) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.health_url = health_url  # ready when GET /healthz there answers 200
        self.ready_line = ready_line  # or once this start has logged this
        self.process: asyncio.subprocess.Process | None = None
        self.ready_at = 0.0
        self.kills: list[Kill] = []

    async def start(self) -> None:
        logged_before = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if self.health_url is not None:
            async with httpx.AsyncClient(base_url=self.health_url, timeout=2) as http:
                await wait_healthy(http, process=self.process)
        else:
            end = time.monotonic() + 60
            while not self._logged_since(logged_before, self.ready_line or ""):
                if self.process.returncode is not None or time.monotonic() > end:
                    raise RuntimeError(f"{self.name} did not start (status {self.process.returncode}): see {self.log}")
                await asyncio.sleep(0.05)
        self.ready_at = time.monotonic()

    def _logged_since(self, offset: int, marker: str) -> bool:
        with self.log.open("rb") as log:
            log.seek(offset)
            return marker.encode() in log.read()

    async def kill_and_restart(self, rng: random.Random, load_started: float) -> None:
        assert self.process is not None
        killed = time.monotonic()
        self.process.kill()  # SIGKILL: no shutdown, no cleanup, open transactions cut off
        await self.process.wait()
        await asyncio.sleep(rng.uniform(0, MAX_RESTART_PAUSE_SECONDS))
        await self.start()
        self.kills.append(Kill(at=killed - load_started, down=self.ready_at - killed))

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=STOP_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def crash(children: list[Child], moments: list[float], rng: random.Random, load_started: float) -> None:
    """SIGKILL every one of `children` at once at each moment (seconds after the load started), once each
    has been ready for MIN_UPTIME_SECONDS, and restart them."""
    for moment in moments:
        due = max(load_started + moment, *(child.ready_at + MIN_UPTIME_SECONDS for child in children))
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await asyncio.gather(*(child.kill_and_restart(random.Random(rng.random()), load_started)
                               for child in children))


async def crashes(api: Child, worker: Child, kills: int, seconds: float, rng: random.Random,
                  load_started: float) -> None:
    """`kills - 1` SIGKILLs of the API and of the worker, each at its own moments, in the first 60 % of
    the load; then both at once, before 85 % of it."""
    api_moments = sorted(rng.uniform(0.1 * seconds, 0.6 * seconds) for _ in range(kills - 1))
    worker_moments = sorted(rng.uniform(0.1 * seconds, 0.6 * seconds) for _ in range(kills - 1))
    together = rng.uniform(0.6 * seconds, 0.85 * seconds)
    api_rng, worker_rng = random.Random(rng.random()), random.Random(rng.random())
    async with asyncio.TaskGroup() as each:
        each.create_task(crash([api], api_moments, api_rng, load_started))
        each.create_task(crash([worker], worker_moments, worker_rng, load_started))
    await crash([api, worker], [together], rng, load_started)


def idempotency_in_progress(response: httpx.Response) -> bool:
    return response.status_code == 409 and "IDEMPOTENCY_IN_PROGRESS" in response.text


def plan_payments(rng: random.Random, count: int, seconds: float) -> list[PlannedPayment]:
    return [
        PlannedPayment(
            start=i * seconds / count,
            investor=rng.randrange(INVESTORS),
            shares=rng.randint(1, 5),
            checkout_delay=rng.uniform(0, MAX_CHECKOUT_SECONDS),
            outcome="failed" if rng.random() < FAILED_CHARGE_SHARE else "success",
            duplicate_delays=tuple(rng.uniform(0, DUPLICATE_DELAY_SECONDS)
                                   for _ in range(rng.randint(0, MAX_DUPLICATES))),
            verify_delay=rng.uniform(0, DUPLICATE_DELAY_SECONDS) if rng.random() < VERIFY_SHARE else None,
        )
        for i in range(count)
    ]


@dataclasses.dataclass
class Load:
    """The requests of the run, as the investors, their browsers and Paystack send them."""

    api: httpx.AsyncClient
    sandbox: httpx.AsyncClient
    secret: str
    investors: list[dict[str, str]]
    run_id: str
    # None while processes are still to be killed: until then a request waits for the restart.
    deadline: float | None = None
    tally: Tally = dataclasses.field(default_factory=Tally)
    outcomes: dict[str, str] = dataclasses.field(default_factory=dict)  # reference -> outcome at checkout

    async def answered(self, what: str, send: Callable[[], Awaitable[httpx.Response]], *,
                       in_progress_retried: bool = False) -> httpx.Response:
        """`send()` until the server answers, as a client or Paystack would: again after no answer or a
        5xx, and after IDEMPOTENCY_IN_PROGRESS if `in_progress_retried`. GaveUp after the deadline."""
        first_pause, last_pause = RETRY_PAUSES_SECONDS
        pause = first_pause
        while True:
            try:
                response = await send()
            except httpx.TransportError:
                self.tally.dropped += 1
            else:
                if response.status_code >= 500:
                    self.tally.server_errors[response.status_code] += 1
                elif in_progress_retried and idempotency_in_progress(response):
                    self.tally.in_progress += 1
                else:
                    return response
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise GaveUp(f"{what}: no answer before the load's deadline")
            await asyncio.sleep(pause)
            pause = min(last_pause, 2 * pause)

    async def pay(self, number: int, planned: PlannedPayment, load_started: float) -> None:
        await asyncio.sleep(max(0.0, load_started + planned.start - time.monotonic()))
        investor = self.investors[planned.investor]
        headers = {**investor, "Idempotency-Key": f"{self.run_id}-{number}"}
        body = {"payment_type": "investment", "app_id": APP_ID, "email": f"investor{planned.investor}@example.com",
                "currency": CURRENCY, "shares": planned.shares}
        created = await self.answered("POST /v1/payments",
                                      lambda: self.api.post("/v1/payments", json=body, headers=headers),
                                      in_progress_retried=True)
        if created.status_code != 201:
            raise RuntimeError(f"POST /v1/payments answered {created.status_code}: {created.text}")
        self.tally.created += 1
        self.tally.replayed += created.headers.get("Idempotent-Replayed") == "true"
        reference = created.json()["reference"]

        await asyncio.sleep(planned.checkout_delay)
        settled = await self.sandbox.post(f"{MOUNT_PREFIX}/_control/charges/{reference}",
                                          json={"outcome": planned.outcome})
        if settled.status_code != 200:
            raise RuntimeError(f"the sandbox did not settle {reference}: {settled.text}")
        self.outcomes[reference] = planned.outcome
        if planned.outcome != "success":
            self.tally.declined += 1
            return
        self.tally.charged += 1
        webhook = json.dumps({"event": "charge.success", "data": settled.json()["data"]},
                             separators=(",", ":")).encode()
        async with asyncio.TaskGroup() as after:
            for delay in planned.duplicate_delays:
                after.create_task(self.duplicate(webhook, delay))
            if planned.verify_delay is not None:
                after.create_task(self.verify(reference, investor, planned.verify_delay))

    async def duplicate(self, webhook: bytes, delay: float) -> None:
        """The same signed charge.success the sandbox sends, again: Paystack delivers at least once."""
        await asyncio.sleep(delay)
        headers = {"x-paystack-signature": sign(webhook, self.secret), "Content-Type": "application/json"}
        response = await self.answered(
            "POST /v1/webhooks/paystack",
            lambda: self.api.post("/v1/webhooks/paystack", content=webhook, headers=headers))
        if response.status_code != 200:
            raise RuntimeError(f"a signed webhook was refused: {response.status_code} {response.text}")
        self.tally.duplicates += 1

    async def verify(self, reference: str, investor: dict[str, str], delay: float) -> None:
        """The payer's browser back from checkout: the API applies the charge itself, racing the worker."""
        await asyncio.sleep(delay)
        response = await self.answered(
            f"POST /v1/payments/{reference}/verify",
            lambda: self.api.post(f"/v1/payments/{reference}/verify", headers=investor))
        if response.status_code != 200:
            raise RuntimeError(f"verify {reference} answered {response.status_code}: {response.text}")
        self.tally.verifies += 1


async def sandbox_charges(sandbox: httpx.AsyncClient, secret: str) -> dict[str, int]:
    """Every successful charge the gateway holds: reference -> amount asked (minor units)."""
    charges: dict[str, int] = {}
    page = 1
    while True:
        listed = await sandbox.get(f"{MOUNT_PREFIX}/transaction", headers={"Authorization": f"Bearer {secret}"},
                                   params={"status": "success", "perPage": 1000, "page": page})
        listed.raise_for_status()
        for charge in listed.json()["data"]:
            charges[charge["reference"]] = int(charge["requested_amount"])
        if page >= listed.json()["meta"]["pageCount"]:
            return charges
        page += 1


async def wait_credited(db: asyncpg.Connection, references: list[str], sandbox_log: Path,
                        patience: float) -> tuple[float, int, int]:
    """Until every reference is a credited payment, every charge.success is in the inbox (or the sandbox
    gave up sending it) and the inbox is empty: from then on a webhook still on its way is a duplicate the
    API drops. At most `patience` seconds; returns (seconds waited, references credited, events waiting)."""
    started = time.monotonic()
    while True:
        credited = await db.fetchval(
            "SELECT count(*) FROM payments p JOIN escrow_transactions e ON e.payment_id = p.id "
            "WHERE p.reference = ANY($1) AND p.status = 'success' AND e.type = 'deposit'", references)
        received = await db.fetchval("SELECT count(*) FROM webhook_events WHERE event = 'charge.success'")
        waiting = await db.fetchval("SELECT count(*) FROM webhook_events WHERE status IN ('pending', 'processing')")
        delivered = received + log_count(sandbox_log, "giving up") >= len(references)
        if (credited == len(references) and delivered and waiting == 0) or time.monotonic() - started > patience:
            return time.monotonic() - started, credited, waiting
        await asyncio.sleep(0.1)


async def ledger_violations(db: asyncpg.Connection, charges: dict[str, int]) -> tuple[list[str], Counter[str]]:
    """What the database says against the gateway's charges; also the inbox's events by status."""
    violations: list[str] = []
    payments = {row["reference"]: row for row in await db.fetch(
        "SELECT id, reference, status, amount, shares, user_id FROM payments WHERE app_id = $1", APP_ID)}
    deposits = {row["payment_id"]: row for row in await db.fetch(
        "SELECT payment_id, count(*) AS n, sum(amount) AS amount FROM escrow_transactions "
        "WHERE type = 'deposit' GROUP BY payment_id")}
    issues = {row["source_id"]: row for row in await db.fetch(
        "SELECT source_id, count(*) AS n, sum(shares) AS shares FROM share_movements "
        "WHERE kind = 'issue' AND app_id = $1 GROUP BY source_id", APP_ID)}
    entries = Counter({row["idempotency_key"]: row["n"] for row in await db.fetch(
        "SELECT idempotency_key, count(*) AS n FROM journal_entries WHERE idempotency_key LIKE 'deposit:%' "
        "GROUP BY idempotency_key")})

    expected_holdings: Counter[str] = Counter()
    for reference, amount in sorted(charges.items()):
        payment = payments.get(reference)
        if payment is None:
            violations.append(f"{reference}: charged by the gateway, unknown to the service")
            continue
        deposit, issue = deposits.get(payment["id"]), issues.get(payment["id"])
        if payment["status"] != "success":
            violations.append(f"{reference}: charged, but the payment is {payment['status']}")
        if payment["amount"] != amount:
            violations.append(f"{reference}: charged {amount}, the payment is of {payment['amount']}")
        if deposit is None or deposit["n"] != 1 or deposit["amount"] != amount:
            violations.append(f"{reference}: charged once, deposited {deposit['n'] if deposit else 0} times")
        if entries[f"deposit:{reference}"] != 1:
            violations.append(f"{reference}: charged once, {entries[f'deposit:{reference}']} deposit journal entries")
        if issue is None or issue["n"] != 1 or issue["shares"] != payment["shares"]:
            violations.append(f"{reference}: charged once, shares issued {issue['n'] if issue else 0} times")
        expected_holdings[payment["user_id"]] += payment["shares"]

    for reference, payment in payments.items():
        if reference in charges:
            continue
        if payment["status"] == "success" or payment["id"] in deposits or payment["id"] in issues:
            violations.append(f"{reference}: never charged, yet {payment['status']} with a deposit or shares")

    escrow = await db.fetchval(
        "SELECT coalesce(sum(p.amount), 0) FROM postings p JOIN ledger_accounts a ON a.id = p.account_id "
        "WHERE a.name = $1", accounts.escrow(APP_ID, CURRENCY))
    if escrow != sum(charges.values()):
        violations.append(f"the app's escrow account holds {escrow}, the gateway charged {sum(charges.values())}")
    holdings = Counter({row["user_id"]: row["shares"] for row in await db.fetch(
        "SELECT user_id, shares FROM holdings WHERE app_id = $1 AND shares > 0", APP_ID)})
    if holdings != expected_holdings:
        violations.append(f"holdings {dict(holdings)} differ from the shares paid for {dict(expected_holdings)}")
    issued = await db.fetchval("SELECT shares_issued FROM apps WHERE id = $1", APP_ID)
    if issued != sum(expected_holdings.values()):
        violations.append(f"the app has issued {issued} shares, {sum(expected_holdings.values())} were paid for")

    inbox = Counter({row["status"]: row["n"] for row in await db.fetch(
        "SELECT status, count(*) AS n FROM webhook_events GROUP BY status")})
    if inbox["failed"]:
        violations.append(f"{inbox['failed']} webhook events failed")
    return violations, inbox


def log_count(path: Path, marker: str) -> int:
    return path.read_text(errors="replace").count(marker) if path.exists() else 0


def describe_kills(child: Child) -> str:
    return ", ".join(f"{kill.at:.1f} s (back in {kill.down:.1f} s)" for kill in child.kills)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long payments keep being created")
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs of the API, and of the worker, during the load")
    parser.add_argument("--seed", type=int, default=1, help="draws the payments and the moments of the kills")
    parser.add_argument("--settle-timeout", type=float, default=60.0,
                        help="seconds to wait after the load for every charge to be credited")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port of PostgreSQL")
    parser.add_argument("--ci", action="store_true",
                        help="the CI size: --payments 80 --seconds 12 --kills 2 --settle-timeout 20")
    args = parser.parse_args()
    if args.ci:
        args.payments, args.seconds, args.kills, args.settle_timeout = 80, 12.0, 2, 20.0
    if args.kills < 1 or args.payments < 1:
        parser.error("--kills and --payments must be at least 1")

    began = time.monotonic()
    run_started = datetime.now(UTC)
    rng = random.Random(args.seed)
    database = f"bench_crash_{os.getpid()}_{secrets.token_hex(3)}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    api_port, sandbox_port = free_port(), free_port()
    api_url, sandbox_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sandbox_port}"
    secret = f"sk_test_crash_{secrets.token_hex(16)}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PUBLIC_BASE_URL")},
        **RECOVERY_SETTINGS,
        "DATABASE_URL": f"postgresql+asyncpg://{args.pg}/{database}",
        "PAYMENT_GATEWAY_MODE": "test",
        "PAYSTACK_BASE_URL": f"{sandbox_url}{MOUNT_PREFIX}",
        "PAYSTACK_SECRET_KEY": secret,
        "JWT_SECRET": secrets.token_urlsafe(48),
        "WORKER_IN_PROCESS": "false",
        "RATE_LIMIT_ENABLED": "false",
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "10",
        "SANDBOX_WEBHOOK_RETRY_DELAYS": SANDBOX_WEBHOOK_RETRY_DELAYS,
        "LOG_LEVEL": "WARNING",
    }
    settings = Settings(_env_file=None, payment_gateway_mode="test", paystack_secret_key=secret,
                        jwt_secret=env["JWT_SECRET"])
    sandbox = Child("sandbox", ["-m", "app", "sandbox", "--port", str(sandbox_port),
                                "--webhook-url", f"{api_url}/v1/webhooks/paystack"],
                    env, workdir / "sandbox.log", health_url=sandbox_url)
    api = Child("API", ["-m", "app", "serve", "--port", str(api_port)], env, workdir / "api.log", health_url=api_url)
    worker = Child("worker", ["-m", "app.worker"], {**env, "LOG_LEVEL": "INFO"}, workdir / "worker.log",
                   ready_line='"worker started"')
    children = [api, worker, sandbox]
    violations: list[str] = []
    await fresh_database(args.pg, database)
    try:
        with (workdir / "migrate.log").open("wb") as out:
            migrated = await asyncio.create_subprocess_exec(sys.executable, "-m", "app", "migrate", cwd=ROOT, env=env,
                                                            stdout=out, stderr=subprocess.STDOUT)
        await sandbox.start()
        if await migrated.wait() != 0:
            raise RuntimeError(f"python -m app migrate failed: see {workdir / 'migrate.log'}")
        await asyncio.gather(api.start(), worker.start())
        started = time.monotonic() - began

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            httpx.AsyncClient(base_url=api_url, timeout=10, limits=limits) as api_http,
            httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox_http,
        ):
            admin = {"Authorization": f"Bearer {issue_token(settings, 'bench-admin', ['admin'])}"}
            app_body = {"name": "Crash", "owner_id": "owner", "currency": CURRENCY, "share_price": "100.00",
                        "total_shares": 10**9, "approvers": [], "required_approvals": 1}
            put = await api_http.put(f"/v1/apps/{APP_ID}", json=app_body, headers=admin)
            assert put.status_code == 200, put.text

            planned = plan_payments(rng, args.payments, args.seconds)
            load_started = time.monotonic()
            load = Load(
                api=api_http, sandbox=sandbox_http, secret=secret,
                investors=[{"Authorization": f"Bearer {issue_token(settings, f'investor-{i}', [])}"}
                           for i in range(INVESTORS)],
                run_id=f"crash-{secrets.token_hex(4)}",
            )
            crash_rng = random.Random(rng.random())

            async def kill_during_load() -> None:
                await crashes(api, worker, args.kills, args.seconds, crash_rng, load_started)
                # every process is back for good: what is still unanswered must be answered soon
                load.deadline = max(time.monotonic(), load_started + args.seconds) + LOAD_GRACE_SECONDS

            async with asyncio.TaskGroup() as running:
                for number, payment in enumerate(planned):
                    running.create_task(load.pay(number, payment, load_started))
                running.create_task(kill_during_load())
            load_seconds = time.monotonic() - load_started

            charges = await sandbox_charges(sandbox_http, secret)
            charged_here = {reference for reference, outcome in load.outcomes.items() if outcome == "success"}
            if set(charges) != charged_here:
                violations.append(f"the sandbox holds {len(charges)} successful charges, the load made "
                                  f"{len(charged_here)}")
            dsn = f"postgresql://{args.pg}/{database}"
            db = await asyncpg.connect(dsn)
            try:
                waited, credited, waiting = await wait_credited(db, sorted(charges), sandbox.log,
                                                                args.settle_timeout)
                if credited != len(charges):
                    violations.append(f"{len(charges) - credited} paid payments not credited "
                                      f"{args.settle_timeout:.0f} s after the load")
                if waiting:
                    violations.append(f"{waiting} webhook events still waiting {args.settle_timeout:.0f} s "
                                      "after the load")
                found, inbox = await ledger_violations(db, charges)
                violations += found
                orphans = await db.fetchval(
                    "SELECT count(*) FROM payments WHERE status = 'pending' AND NOT (reference = ANY($1))",
                    list(load.outcomes))
                taken_again = await db.fetchval("SELECT count(*) FROM webhook_events WHERE attempts > 1")
            finally:
                await db.close()

            integrity = (await api_http.get("/v1/admin/integrity", headers=admin)).raise_for_status().json()
            if not integrity["ok"]:
                failing = [check["name"] for check in integrity["checks"] if not check["ok"]]
                violations.append(f"GET /v1/admin/integrity: failing {failing}")
            window = {"from": (run_started - timedelta(minutes=1)).isoformat(),
                      "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
            reconciliation = (await api_http.get("/v1/admin/reconciliation", params=window, headers=admin)
                              ).raise_for_status().json()
            differences = reconciliation["differences"]
            if not reconciliation["ok"]:
                violations += [f"reconciliation: {d['record']} {d['reference']} {d['kind']}" for d in differences]
        if load.tally.server_errors:
            violations.append(f"5xx answers during the load: {dict(load.tally.server_errors)}")
    except BaseException:
        print(f"crash recovery bench: stopped by an error or a signal; logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        await asyncio.gather(*(child.stop() for child in children))
        await drop_database(args.pg, database)

    tally = load.tally
    print(f"crash recovery bench: {args.payments} payments over {args.seconds:.0f} s, seed {args.seed}; API and "
          f"worker SIGKILLed {args.kills}x each; PostgreSQL, sandbox gateway in its own process (test mode)")
    print(f"  processes started in        {started:6.1f} s")
    print(f"  load (all answered) in      {load_seconds:6.1f} s")
    print(f"  API killed at               {describe_kills(api)}")
    print(f"  worker killed at            {describe_kills(worker)}")
    print(f"  payments created            {tally.created:6d}   (replayed from their Idempotency-Key "
          f"{tally.replayed}, IDEMPOTENCY_IN_PROGRESS waits {tally.in_progress})")
    print(f"  charged / declined          {tally.charged:6d} / {tally.declined}")
    print(f"  duplicate webhooks sent     {tally.duplicates:6d}")
    print(f"  verify calls                {tally.verifies:6d}")
    print(f"  requests sent again         {tally.dropped:6d}   (no answer: refused, or the server died)")
    print(f"  sandbox webhook retries     {log_count(sandbox.log, 'failed: ')}   "
          f"(given up: {log_count(sandbox.log, 'giving up')})")
    print(f"  payments of killed requests {orphans:6d}   (pending, never charged: the retry came after the "
          "Idempotency-Key's lease and made its own)")
    print(f"  settled after the load in   {waited:6.1f} s   ({credited} of {len(charges)} charges credited, "
          "every webhook received)")
    print(f"  webhook inbox               {dict(sorted(inbox.items()))}   (taken more than once: {taken_again})")
    print(f"  ledger integrity            {integrity['ok']}")
    print(f"  reconciliation differences  {len(differences):6d}")
    print(f"  total                       {time.monotonic() - began:6.1f} s")
    if violations:
        print(f"FAILED: {len(violations)} violation(s); logs kept in {workdir}")
        for violation in violations[:20]:
            print(f"  - {violation}")
        sys.exit(1)
    print("  every paid payment credited exactly once: True")
    shutil.rmtree(workdir, ignore_errors=True)


def run() -> None:
    """Cancel the run on SIGTERM as on Ctrl-C, so that its processes and database are always cleaned up."""
    async def cancellable() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await main()

    try:
        asyncio.run(cancellable())
    except asyncio.CancelledError:
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    run()
