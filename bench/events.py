"""Outbound events under the webhook benchmark's load, against PostgreSQL.

Runs bench/webhooks.py's load on fresh databases (the service started as the README says, sandbox
gateway, the API process running its own worker): N pending investment payments settled in the sandbox, then
N signed `charge.success` webhooks (a third sent twice) at concurrency C. Runs alternate, `--rounds` times:
one with no webhook endpoint, then one with an endpoint subscribed to every event, pointing at a local
receiver (in this process) that de-duplicates by `webhook-id`. Reports each run's credited/s, the ratio of
the medians with and without the endpoint, events delivered/s, the p50/p99 from an event's commit (its
`created_at`) to its arrival, and whether every event arrived exactly once.

    python bench/events.py --n 2000 --c 32 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import httpx
from common import (
    ROOT,
    drop_database,
    fresh_database,
    percentile,
    run_database_name,
    run_on_service_loop,
    wait_healthy,
)
from webhooks import run_load, webhook_load

from app.core.config import Settings
from app.core.security import issue_token


@dataclass
class Receiver:
    """A keep-alive HTTP/1.1 receiver answering 204 to every POST, recording each event's first arrival."""

    arrivals: dict[str, float] = field(default_factory=dict)  # webhook-id -> seconds from commit to arrival
    duplicates: int = 0
    last_arrival: float = 0.0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
                headers = {k.lower(): v for k, v in headers.items()}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.record(headers["webhook-id"], json.loads(body)["created_at"])
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def reset(self) -> None:
        self.arrivals, self.duplicates, self.last_arrival = {}, 0, 0.0

    def record(self, event_id: str, created_at: str) -> None:
        now = time.time()
        if event_id in self.arrivals:
            self.duplicates += 1
            return
        self.arrivals[event_id] = now - datetime.fromisoformat(created_at).timestamp()
        self.last_arrival = time.perf_counter()


@dataclass
class Run:
    credited_rate: float
    started: float  # perf_counter when the webhooks started
    events: int = 0
    delivered: int = 0
    duplicates: int = 0
    delivered_rate: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds from commit to arrival


async def one_run(args: argparse.Namespace, receiver_url: str | None, receiver: Receiver) -> Run:
    name = run_database_name("bench_events")
    await fresh_database(args.pg, name)
    base = f"http://127.0.0.1:{args.port}"
    env = {
        **os.environ, "DATABASE_URL": f"postgresql+asyncpg://{args.pg}/{name}", "PUBLIC_BASE_URL": base,
        "PAYMENT_GATEWAY_MODE": "sandbox", "RATE_LIMIT_DEFAULT": "1000000/minute",
        "RATE_LIMIT_PAYMENTS": "1000000/minute", "RATE_LIMIT_WEBHOOKS": "1000000/minute", "LOG_LEVEL": "WARNING",
        "WORKER_POLL_INTERVAL_SECONDS": "0.05", "WORKER_IN_PROCESS": "true",
    }
    env.pop("REDIS_URL", None)
    settings = Settings(_env_file=None, public_base_url=base)
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "app", "serve", "--port", str(args.port),
                                                  cwd=ROOT, env=env, **quiet)
    try:
        limits = httpx.Limits(max_connections=args.c + 8, max_keepalive_connections=args.c + 8)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            await wait_healthy(http)
            admin = {"Authorization": f"Bearer {issue_token(settings, 'bench-admin', ['admin'])}"}
            load = await webhook_load(http, settings, admin, args.n, args.c)
            if receiver_url:  # no event exists before the webhooks credit the payments
                registered = await http.post("/v1/admin/webhook-endpoints", headers=admin,
                                             json={"url": receiver_url, "events": ["*"]})
                assert registered.status_code == 201, registered.text

            db = await asyncpg.connect(f"postgresql://{args.pg}/{name}")
            started = time.perf_counter()
            await run_load("127.0.0.1", args.port, load, args.c)
            while await db.fetchval("SELECT count(*) FROM escrow_transactions WHERE type = 'deposit'") < args.n:
                if time.perf_counter() - started > 600:
                    raise SystemExit("not every deposit was credited in 10 minutes")
                await asyncio.sleep(0.02)
            run = Run(credited_rate=args.n / (time.perf_counter() - started), started=started)
            run.events = await db.fetchval("SELECT count(*) FROM outbound_events")
            if receiver_url:
                for _ in range(12_000):  # at most 10 minutes
                    if len(receiver.arrivals) >= run.events:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1)  # a duplicate would come now
                run.delivered, run.duplicates = len(receiver.arrivals), receiver.duplicates
                run.delivered_rate = run.delivered / (receiver.last_arrival - started)
                run.latencies = list(receiver.arrivals.values())
            await db.close()
            return run
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)
        await drop_database(args.pg, name)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--c", type=int, default=32)
    parser.add_argument("--port", type=int, default=8023)
    parser.add_argument("--receiver-port", type=int, default=8024)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port of PostgreSQL")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs, without then with the endpoint")
    args = parser.parse_args()
    receiver = Receiver()
    listener = await asyncio.start_server(receiver.serve, "127.0.0.1", args.receiver_port)
    without: list[Run] = []
    with_endpoint: list[Run] = []
    try:
        for _ in range(args.rounds):
            without.append(await one_run(args, None, receiver))
            receiver.reset()
            with_endpoint.append(await one_run(args, f"http://127.0.0.1:{args.receiver_port}/events", receiver))
    finally:
        listener.close()
    print(f"events bench: N={args.n} C={args.c}, API process with its own worker, PostgreSQL, sandbox gateway, "
          f"one endpoint subscribed to every event; {args.rounds} round(s), runs alternating")
    print("  run                 credited/s   events written / delivered (dup)   delivered/s   "
          "commit->delivery p50 / p99")
    for index, (plain, run) in enumerate(zip(without, with_endpoint, strict=True), 1):
        print(f"  {index} without endpoint   {plain.credited_rate:10.1f}")
        print(f"  {index} with endpoint      {run.credited_rate:10.1f}   {run.events:6d} / {run.delivered:6d} "
              f"({run.duplicates})        {run.delivered_rate:10.1f}   {percentile(run.latencies, 0.5) * 1000:8.1f} ms"
              f" / {percentile(run.latencies, 0.99) * 1000:.1f} ms")
    ratio = statistics.median(r.credited_rate for r in with_endpoint) / statistics.median(
        r.credited_rate for r in without)
    print(f"  credited/s with endpoint / without (medians): {ratio:.2f}   (target >= 0.85)")
    if any(run.delivered != run.events or run.duplicates for run in with_endpoint):
        sys.exit(1)


if __name__ == "__main__":
    run_on_service_loop(main())
