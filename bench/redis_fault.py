"""A hung Redis (SIGSTOP) must not slow GET /healthz or fail any request.

Starts a redis-server of its own on a free loopback port and the service for real
(`python -m app serve` on a free port, SQLite, sandbox gateway, `REDIS_URL` at that
Redis, the in-process worker on), then sends paced load over keep-alive
connections: GET /healthz, and rate-limited /v1 traffic (GET and POST /v1/payments
by a few users). After a warm-up (one request of each kind, then a second of load,
not measured) and `--seconds` more, it stops Redis with SIGSTOP; `--seconds` later
it resumes it with SIGCONT, and the load goes on for `--after` seconds. A request's
latency runs from the moment it was due to be sent, so a stalled server shows up in
every request it held back. Prints /healthz p50/p99 before, during and after the
fault, the /v1 answers by status, the 5xx count, the limiter's Redis trips and the
server's rate-limit log lines.

Exit status 1 if /healthz p99 during the fault is 50 ms or more, any request got a
5xx or no answer, or the limiter is not back on Redis at the end.

    python bench/redis_fault.py               # 10 s before, 10 s hung, 5 s after
    python bench/redis_fault.py --ci          # the CI size: 5 s, 5 s, 3 s
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
from common import ROOT, KeepAliveConnection, free_port, percentile, run_on_service_loop, wait_healthy

from app.core.config import Settings
from app.core.security import issue_token

P99_LIMIT_SECONDS = 0.050
WARMUP_SECONDS = 1.0
ANSWER_TIMEOUT_SECONDS = 5.0
USERS = 8

Request = tuple[str, str, bytes, dict[str, str]]


@dataclasses.dataclass
class Sample:
    due: float  # seconds after the measured load started (negative: warm-up)
    latency: float  # from `due` to the answer
    status: int  # 0: no answer within ANSWER_TIMEOUT_SECONDS


def start_redis(port: int) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed: this benchmark runs one of its own to SIGSTOP")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=1)
    for _ in range(100):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    sys.exit("redis-server did not start")


async def paced(port: int, make: Callable[[int], Request], rate: float, first: float, stop: float,
                started: float, samples: list[Sample]) -> None:
    """Send `make(n)` at `rate` per second from `first` until `stop` (perf_counter times) on one connection."""
    connection = KeepAliveConnection("127.0.0.1", port)
    n = 0
    try:
        while (due := first + n / rate) < stop:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            method, path, body, headers = make(n)
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
                    status = await connection.request(method, path, body, headers)
            except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                status = 0
                connection.close()  # a half-read answer leaves it unusable
                connection = KeepAliveConnection("127.0.0.1", port)
            samples.append(Sample(due - started, time.perf_counter() - due, status))
            n += 1
    finally:
        connection.close()


def limiter_metrics(text: str) -> tuple[float, float]:
    """(Redis trips so far, 1 if counting in memory now) from the /metrics text."""
    trips = in_memory = 0.0
    for line in text.splitlines():
        if line.startswith("rate_limit_redis_trips_total{"):
            trips += float(line.rsplit(" ", 1)[1])
        elif line.startswith("rate_limit_counting_in_memory "):
            in_memory = float(line.rsplit(" ", 1)[1])
    return trips, in_memory


def log_messages(path: Path, marker: str) -> list[str]:
    messages = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            message = str(json.loads(line).get("message", ""))
        except (ValueError, AttributeError):
            continue
        if marker in message:
            messages.append(message)
    return messages


def describe(samples: list[Sample]) -> str:
    latencies = [s.latency for s in samples if s.status]
    if not latencies:
        return "no answers"
    return (f"{statistics.median(latencies) * 1000:7.1f} ms / {percentile(latencies, 0.99) * 1000:7.1f} ms"
            f"   (n={len(samples)})")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="load before the fault, and length of the fault")
    parser.add_argument("--after", type=float, default=5.0, help="load after Redis resumes")
    parser.add_argument("--healthz-rate", type=float, default=200.0, help="GET /healthz per second, in all")
    parser.add_argument("--healthz-connections", type=int, default=8)
    parser.add_argument("--v1-rate", type=float, default=40.0, help="/v1 requests per second, in all")
    parser.add_argument("--v1-connections", type=int, default=4)
    parser.add_argument("--ci", action="store_true", help="the CI size: --seconds 5 --after 3")
    args = parser.parse_args()
    if args.ci:
        args.seconds, args.after = 5.0, 3.0

    redis_port, port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-fault-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "PUBLIC_BASE_URL": base,
        "PAYMENT_GATEWAY_MODE": "sandbox",
        "WORKER_IN_PROCESS": "true",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_DEFAULT": "600/minute",
        "RATE_LIMIT_PAYMENTS": "60/minute",
        "LOG_LEVEL": "WARNING",
    }
    settings = Settings(_env_file=None, public_base_url=base)
    server_log = workdir / "server.log"
    redis_server = start_redis(redis_port)
    with server_log.open("wb") as log_file:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "serve", "--port", str(port), cwd=ROOT, env=env,
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await wait_healthy(http)
            admin = {"Authorization": f"Bearer {issue_token(settings, 'bench-admin', ['admin'])}"}
            app_body = {"name": "Bench", "owner_id": "owner", "currency": "NGN", "share_price": "100.00",
                        "total_shares": 10**9, "approvers": [], "required_approvals": 1}
            assert (await http.put("/v1/apps/bench", json=app_body, headers=admin)).status_code == 200

            users = [{"Authorization": f"Bearer {issue_token(settings, f'bench-user-{i}', [])}"}
                     for i in range(USERS)]
            investment = json.dumps({"payment_type": "investment", "app_id": "bench", "email": "b@example.com",
                                     "currency": "NGN", "shares": 1}).encode()

            def healthz(n: int) -> Request:
                return "GET", "/healthz", b"", {}

            def v1(connection: int) -> Callable[[int], Request]:
                def make(n: int) -> Request:
                    user = users[(connection + n) % USERS]
                    if n % 5 == 4:
                        return "POST", "/v1/payments", investment, {**user, "Content-Type": "application/json"}
                    return "GET", "/v1/payments?limit=5", b"", user
                return make

            # the first of each request pays for cold paths (the gateway's first connection, first queries)
            assert (await http.get("/v1/payments", headers=users[0])).status_code == 200
            warm = await http.post("/v1/payments", content=investment,
                                   headers={**users[0], "Content-Type": "application/json"})
            assert warm.status_code == 201, warm.text

            started = time.perf_counter() + WARMUP_SECONDS
            fault_at, resume_at = started + args.seconds, started + 2 * args.seconds
            stop = resume_at + args.after
            warmup = started - WARMUP_SECONDS
            health_samples: list[Sample] = []
            v1_samples: list[Sample] = []
            health_rate = args.healthz_rate / args.healthz_connections
            v1_rate = args.v1_rate / args.v1_connections

            async def fault() -> None:
                await asyncio.sleep(fault_at - time.perf_counter())
                redis_server.send_signal(signal.SIGSTOP)
                await asyncio.sleep(resume_at - time.perf_counter())
                redis_server.send_signal(signal.SIGCONT)

            await asyncio.gather(
                fault(),
                *(paced(port, healthz, health_rate, warmup + i / args.healthz_rate, stop, started, health_samples)
                  for i in range(args.healthz_connections)),
                *(paced(port, v1(i), v1_rate, warmup + i / args.v1_rate, stop, started, v1_samples)
                  for i in range(args.v1_connections)),
            )
            await asyncio.sleep(0.5)  # the last log lines
            trips, in_memory = limiter_metrics((await http.get("/metrics")).text)
    finally:
        redis_server.send_signal(signal.SIGCONT)
        redis_server.kill()
        redis_server.wait()
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)

    def phase(samples: list[Sample], name: str) -> list[Sample]:
        bounds = {"before": (0, args.seconds), "during": (args.seconds, 2 * args.seconds),
                  "after": (2 * args.seconds, 2 * args.seconds + args.after)}[name]
        return [s for s in samples if bounds[0] <= s.due < bounds[1]]

    everything = health_samples + v1_samples
    server_errors = sum(1 for s in everything if s.status >= 500)
    unanswered = sum(1 for s in everything if s.status == 0)
    during = [s.latency for s in phase(health_samples, "during") if s.status]
    p99_during = percentile(during, 0.99) if during else float("inf")

    print(f"redis fault bench: GET /healthz {args.healthz_rate:.0f}/s over {args.healthz_connections} connections, "
          f"/v1 {args.v1_rate:.0f}/s over {args.v1_connections}; {args.seconds:.0f} s before, {args.seconds:.0f} s "
          f"with Redis stopped (SIGSTOP), {args.after:.0f} s after SIGCONT; SQLite, sandbox gateway, "
          "in-process worker")
    for name in ("before", "during", "after"):
        print(f"  /healthz p50 / p99 {name:7s} {describe(phase(health_samples, name))}")
    for name in ("before", "during", "after"):
        statuses = Counter(s.status for s in phase(v1_samples, name))
        shown = ", ".join(f"{status or 'no answer'}: {count}" for status, count in sorted(statuses.items()))
        print(f"  /v1 answers {name:7s}       {shown}")
    print(f"  5xx (all requests)         {server_errors}")
    print(f"  no answer within {ANSWER_TIMEOUT_SECONDS:.0f} s       {unanswered}")
    print(f"  limiter Redis trips        {trips:.0f}")
    print(f"  limiter back on Redis      {in_memory == 0}")
    for message in log_messages(server_log, "rate limits:"):
        print(f"  server log: {message}")
    shutil.rmtree(workdir, ignore_errors=True)
    if p99_during >= P99_LIMIT_SECONDS or server_errors or unanswered or in_memory != 0:
        print(f"FAILED: needs /healthz p99 during the fault < {P99_LIMIT_SECONDS * 1000:.0f} ms, no 5xx, "
              "every request answered, and the limiter back on Redis")
        sys.exit(1)


if __name__ == "__main__":
    run_on_service_loop(main())
