"""Webhook intake and crediting throughput, against PostgreSQL, with GET /healthz as the ceiling.

Starts the service the way the README says (`python -m app serve`, sandbox gateway),
optionally with extra `python -m app.worker` processes, creates N pending investment
payments, settles their charges in the sandbox without webhooks, then fires N signed
`charge.success` webhooks at concurrency C (a third of them sent twice) and measures:
accepted/s, accept latency p50/p99, seconds until every deposit is credited, credited/s,
server CPU ms per credited payment, and where the machine's cores went meanwhile (the sandbox process,
PostgreSQL's backends for the run's database, this load generator, the whole machine); then the same load
of GET /healthz on the same server.
Finally it checks every payment was credited exactly once and the ledger balances.

    python bench/webhooks.py --n 2000 --c 32 --workers 1   # API + one worker process (throughput shape)
    python bench/webhooks.py --n 2000 --c 32               # the API process runs its own worker
    python bench/webhooks.py --workers 1 --peer ../peer-bench  # side by side with the peer (its run.sh, after
                                                               # its setup.sh), alternating, --rounds times
    python bench/webhooks.py --workers 1 --gateway-process     # the sandbox in a process of its own
    python bench/webhooks.py --apis 2 --workers 2 --gateway-process   # scale-out: load spread over two APIs

With `--gateway-process` the Paystack sandbox runs alone (`python -m app sandbox`), the service in `test`
mode points `PAYSTACK_BASE_URL` at it, and the sandbox's CPU is reported apart from the service's.

With `--peer DIR` (the peer benchmark's folder: `setup.sh` run once before, `run.sh` runs one round of
django-paystack-wallet under the same load shape on its own ports) each round runs the peer, then this
service, and a table at the end shows both, their ratio and the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from common import (
    ROOT,
    KeepAliveConnection,
    analyze,
    drop_database,
    fresh_database,
    percentile,
    run_database_name,
    run_on_service_loop,
    wait_healthy,
)

from app.core.config import Settings
from app.core.security import issue_token
from app.gateway.signature import sign

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    return sum(process_cpu(pid) for pid in pids)


def process_niceness(pid: int) -> int:
    """A live process's niceness (a worker process lowers its own: WORKER_NICENESS)."""
    return os.getpriority(os.PRIO_PROCESS, pid)


def process_cpu(pid: int) -> float:
    """CPU seconds a live process has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy, over all cores (/proc/stat: everything but idle and
    iowait)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


async def postgres_cpu(db: asyncpg.Connection, name: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend serving database `name` (the service's pooled
    connections live through a run)."""
    pids = await db.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    return {row["pid"]: process_cpu(row["pid"]) for row in pids}


async def run_load(host: str, port: int | list[int], requests: list[tuple[str, str, bytes, dict[str, str]]],
                   concurrency: int) -> tuple[float, list[float], int]:
    """Send every request over `concurrency` keep-alive connections (spread evenly over the ports given);
    returns seconds, latencies, failures."""
    ports = port if isinstance(port, list) else [port]
    queue = list(reversed(requests))
    latencies: list[float] = []
    failures = 0

    async def sender(port: int) -> None:
        nonlocal failures
        connection = KeepAliveConnection(host, port)
        try:
            while queue:
                method, path, body, headers = queue.pop()
                started = time.perf_counter()
                status = await connection.request(method, path, body, headers)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures += 1
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender(ports[i % len(ports)]) for i in range(concurrency)))
    return time.perf_counter() - started, latencies, failures


Request = tuple[str, str, bytes, dict[str, str]]


async def webhook_load(http: httpx.AsyncClient, settings: Settings, admin: dict[str, str], n: int, c: int,
                       gateway_url: str = "/sandbox/paystack") -> list[Request]:
    """The app `bench`, `n` pending investment payments (`c` at once), their charges settled in the sandbox
    without webhooks, and their signed `charge.success` webhooks, a third of them twice, shuffled."""
    secret = settings.paystack_secret_key.get_secret_value()
    app_body = {"name": "Bench", "owner_id": "owner", "currency": "NGN", "share_price": "100.00",
                "total_shares": 10**9, "approvers": [], "required_approvals": 1}
    assert (await http.put("/v1/apps/bench", json=app_body, headers=admin)).status_code == 200
    users = [{"Authorization": f"Bearer {issue_token(settings, f'investor-{i}', [])}"} for i in range(64)]
    body = {"payment_type": "investment", "app_id": "bench", "email": "b@example.com", "currency": "NGN",
            "shares": 1}
    semaphore = asyncio.Semaphore(c)

    async def create(i: int) -> str:
        async with semaphore:
            response = await http.post("/v1/payments", json=body, headers=users[i % 64])
            if response.status_code != 201:
                raise SystemExit(f"creating a payment answered {response.status_code}: {response.text}")
            return str(response.json()["reference"])

    references = await asyncio.gather(*(create(i) for i in range(n)))
    assert len(references) == n
    control = {"Authorization": f"Bearer {secret}"}
    webhooks: list[Request] = []
    for reference in references:
        settled = await http.post(f"{gateway_url}/_control/charges/{reference}", headers=control,
                                  json={"outcome": "success", "send_webhook": False})
        payload = json.dumps({"event": "charge.success", "data": settled.json()["data"]},
                             separators=(",", ":")).encode()
        webhooks.append(("POST", "/v1/webhooks/paystack", payload,
                         {"x-paystack-signature": sign(payload, secret), "Content-Type": "application/json"}))
    load = webhooks + webhooks[: n // 3]
    random.Random(7).shuffle(load)
    return load


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--c", type=int, default=32)
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--workers", type=int, default=0,
                        help="separate `python -m app.worker` processes (the API then runs no worker itself)")
    parser.add_argument("--apis", type=int, default=1,
                        help="API processes, on --port, --port+1, ...; the load is spread over them evenly (more "
                        "than one needs --gateway-process: an in-process sandbox keeps its records to itself)")
    parser.add_argument("--gateway-process", action="store_true",
                        help="run the sandbox as a process of its own and the service in test mode against it")
    parser.add_argument("--profile", type=Path,
                        help="folder for py-spy profiles (raw folded stacks) of each API and worker process, "
                        "sampled from the first webhook until the last payment is credited; needs py-spy")
    parser.add_argument("--profile-format", choices=["raw", "flamegraph"], default="flamegraph",
                        help="flamegraph: an SVG per process; raw: folded stacks, for bench/profile_summary.py")
    parser.add_argument("--backlog", action="store_true",
                        help="with --workers: pause the worker processes (SIGSTOP) while the webhooks are "
                        "accepted, then resume them and time the crediting of the full inbox alone")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port of PostgreSQL")
    parser.add_argument("--database", help="keep the database, under this name (default: one of the run's own, "
                        "dropped at the end)")
    parser.add_argument("--peer", type=Path, help="the peer benchmark's folder: run it side by side, alternating")
    parser.add_argument("--rounds", type=int, default=2, help="with --peer: peer-then-this rounds")
    args = parser.parse_args()
    if args.apis > 1 and not args.gateway_process:
        parser.error("--apis above 1 needs --gateway-process")
    if args.backlog and not args.workers:
        parser.error("--backlog needs --workers")
    if args.peer is None:
        if not await measured(args):
            sys.exit(1)
        return
    rows = []
    for round_number in range(1, args.rounds + 1):
        peer = run_peer(args.peer)
        ours = await measured(args)
        rows.append((round_number, peer, ours, os.getloadavg()[0]))
    print_side_by_side(args, rows)
    if not all(ours["ok"] for _, _, ours, _ in rows):
        sys.exit(1)


async def measured(args: argparse.Namespace) -> dict[str, float | bool]:
    """One run of this service's benchmark, on a database of its own."""
    name = args.database or run_database_name("bench_webhooks")
    await fresh_database(args.pg, name)
    try:
        return await measure(args, name)
    finally:
        if not args.database:
            await drop_database(args.pg, name)


def run_peer(folder: Path) -> dict[str, float | bool]:
    """One round of the peer's own benchmark (`run.sh`, its ports and database); its figures from the result
    file it writes."""
    results = Path(os.environ.get("PEER_RESULTS_DIR")
                   or Path(os.environ.get("PEERBENCH_DIR", "/tmp/peerbench")) / "results")
    before = set(results.glob("peer-wallet-*.json")) if results.exists() else set()
    run = subprocess.run(["bash", str(folder / "run.sh")], capture_output=True, text=True, timeout=1200)
    written = sorted(set(results.glob("peer-wallet-*.json")) - before, key=lambda path: path.stat().st_mtime)
    if not written:
        raise SystemExit(f"the peer's run.sh wrote no result (exit {run.returncode}):\n{run.stdout[-2000:]}"
                         f"{run.stderr[-2000:]}")
    result = json.loads(written[-1].read_text())
    webhook = result["webhook"]
    return {"unique_events_per_s": float(webhook["unique_events_per_s"]), "p99_ms": float(webhook["lat_ms"]["p99"]),
            "ceiling_per_s": float(result["ceiling"]["req_per_s"]), "ok": bool(result["audit"]["ok"])}


def describe_shape(args: argparse.Namespace) -> str:
    apis = f"{args.apis} API processes" if args.apis > 1 else "API process"
    shape = f"{apis} + {args.workers} worker process(es)" if args.workers else f"{apis} with its own worker"
    gateway = "sandbox gateway in a process of its own (test mode)" if args.gateway_process else \
        "sandbox gateway in the API process"
    return f"{shape}, {gateway}"


def print_side_by_side(args: argparse.Namespace, rows: list[tuple[int, dict, dict, float]]) -> None:
    print(f"\nside by side: N={args.n} C={args.c}; this service: {describe_shape(args)}, every charge verified; "
          "peer: django-paystack-wallet (its run.sh defaults), no gateway verify")
    print("| round | peer unique events/s | peer p99 ms | peer audit | credited/s | accept p99 ms | credited / peer "
          "| credited / healthz | books ok | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for number, peer, ours, load in rows:
        print(f"| {number} | {peer['unique_events_per_s']:.1f} | {peer['p99_ms']:.1f} | "
              f"{'ok' if peer['ok'] else 'VIOLATIONS'} | {ours['credited_per_s']:.1f} | {ours['accept_p99_ms']:.1f} | "
              f"{ours['credited_per_s'] / peer['unique_events_per_s']:.2f} | {ours['credited_per_healthz']:.2f} | "
              f"{ours['ok']} | {load:.2f} |")


async def wait_listening(port: int, process: asyncio.subprocess.Process, deadline: float = 60) -> None:
    """Until something accepts connections on 127.0.0.1:`port` (the sandbox has no health route)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end and process.returncode is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} (exit status {process.returncode})")


BENCH_SECRET_KEY = "sk_test_" + "b" * 40  # test mode refuses the development defaults
BENCH_JWT_SECRET = "bench-jwt-secret-" + "0123456789abcdef" * 2


def start_profilers(folder: Path, output_format: str, apis: list[asyncio.subprocess.Process],
                    workers: list[asyncio.subprocess.Process]) -> list[subprocess.Popen[bytes]]:
    """py-spy on every API and worker process, 200 samples/s, until `stop_profilers`."""
    folder.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    roles = [("api", process) for process in apis] + [("worker", process) for process in workers]
    suffix = "svg" if output_format == "flamegraph" else "txt"
    return [subprocess.Popen([str(spy) if spy.exists() else "py-spy", "record", "--pid", str(process.pid),
                              "--rate", "200", "--format", output_format, "--nonblocking",
                              "--output", str(folder / f"{role}-{index}.{suffix}")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for index, (role, process) in enumerate(roles)]


async def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT makes py-spy write what it sampled."""
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        await asyncio.to_thread(profiler.wait, 60)


def gateway_port(args: argparse.Namespace) -> int:
    return args.port + 100


def service_environment(args: argparse.Namespace, name: str, base: str) -> tuple[dict[str, str], str]:
    """The environment of the service's processes, and the gateway's URL as the benchmark reaches it."""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql+asyncpg://{args.pg}/{name}",
        "PUBLIC_BASE_URL": base,
        "PAYMENT_GATEWAY_MODE": "sandbox",
        "RATE_LIMIT_DEFAULT": "1000000/minute",
        "RATE_LIMIT_PAYMENTS": "1000000/minute",
        "RATE_LIMIT_WEBHOOKS": "1000000/minute",
        "LOG_LEVEL": "WARNING",
        "WORKER_POLL_INTERVAL_SECONDS": "0.05",
    }
    env.pop("REDIS_URL", None)
    if not args.gateway_process:
        return env, "/sandbox/paystack"
    gateway_url = f"http://127.0.0.1:{gateway_port(args)}/sandbox/paystack"
    env.update({"PAYMENT_GATEWAY_MODE": "test", "PAYSTACK_BASE_URL": gateway_url,
                "PAYSTACK_SECRET_KEY": BENCH_SECRET_KEY, "JWT_SECRET": BENCH_JWT_SECRET})
    return env, gateway_url


async def measure(args: argparse.Namespace, name: str) -> dict[str, float | bool]:
    ports = [args.port + i for i in range(args.apis)]
    base = f"http://127.0.0.1:{ports[0]}"
    env, gateway_url = service_environment(args, name, base)
    settings = Settings(_env_file=None, public_base_url=base, payment_gateway_mode=env["PAYMENT_GATEWAY_MODE"],
                        **({"paystack_secret_key": BENCH_SECRET_KEY, "jwt_secret": BENCH_JWT_SECRET}
                           if args.gateway_process else {}))
    # The servers' output (their log is at WARNING) is kept until the run ends, and shown if it fails: a
    # connection the service closed without answering once stopped a run with nothing to read.
    servers_log = Path(tempfile.gettempdir()) / f"{name}-servers.log"
    log_file = servers_log.open("wb")
    quiet = {"stdout": log_file, "stderr": log_file}
    api_env = {**env, "WORKER_IN_PROCESS": "false" if args.workers else "true"}
    gateway: asyncio.subprocess.Process | None = None
    apis: list[asyncio.subprocess.Process] = []
    workers: list[asyncio.subprocess.Process] = []

    def servers() -> list[tuple[str, asyncio.subprocess.Process]]:
        """Every server process started so far, by role, in the order they are stopped."""
        return [*(("worker", w) for w in workers), *(("API", a) for a in apis),
                *([("gateway", gateway)] if gateway else [])]

    try:
        limits = httpx.Limits(max_connections=args.c + 8, max_keepalive_connections=args.c + 8)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            if args.gateway_process:
                gateway = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "app", "sandbox", "--port", str(gateway_port(args)),
                    "--webhook-url", f"{base}/v1/webhooks/paystack", cwd=ROOT, env=env, **quiet)
                await wait_listening(gateway_port(args), gateway)
            for index, port in enumerate(ports):  # the first migrates the fresh database; the others wait for it
                apis.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "app", "serve", "--port", str(port), *(["--no-migrate"] if index else []),
                    cwd=ROOT, env=api_env, **quiet))
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
                    await wait_healthy(probe, process=apis[-1])
            workers = [
                await asyncio.create_subprocess_exec(sys.executable, "-m", "app.worker", cwd=ROOT, env=env, **quiet)
                for _ in range(args.workers)
            ]
            admin = {"Authorization": f"Bearer {issue_token(settings, 'bench-admin', ['admin'])}"}
            load = await webhook_load(http, settings, admin, args.n, args.c, gateway_url)

            dsn = f"postgresql://{args.pg}/{name}"
            await analyze(dsn)
            db = await asyncpg.connect(dsn)
            api_pids, worker_pids = [api.pid for api in apis], [worker.pid for worker in workers]
            pids = api_pids + worker_pids
            gateway_pids = [gateway.pid] if gateway else []
            profilers = start_profilers(args.profile, args.profile_format, apis, workers) if args.profile else []
            cpu_before, gateway_cpu_before = cpu_seconds(pids), cpu_seconds(gateway_pids)
            api_cpu_before = cpu_seconds(api_pids)
            postgres_before, machine_before = await postgres_cpu(db, name), machine_busy_seconds()
            load_cpu_before = time.process_time()
            started = time.perf_counter()
            for worker in workers if args.backlog else []:
                worker.send_signal(signal.SIGSTOP)
            accept_elapsed, accept_latencies, accept_failures = await run_load("127.0.0.1", ports, load, args.c)
            resumed = time.perf_counter()
            worker_cpu_before = cpu_seconds(worker_pids)
            for worker in workers if args.backlog else []:
                worker.send_signal(signal.SIGCONT)
            while True:
                credited = await db.fetchval("SELECT count(*) FROM escrow_transactions WHERE type = 'deposit'")
                if credited >= args.n or time.perf_counter() - started > 600:
                    break
                await asyncio.sleep(0.02)
            credit_elapsed = time.perf_counter() - started
            drain_elapsed = time.perf_counter() - resumed
            worker_cpu = cpu_seconds(worker_pids) - worker_cpu_before
            worker_niceness = sorted({process_niceness(pid) for pid in worker_pids})
            cpu_webhooks = cpu_seconds(pids) - cpu_before
            gateway_cpu = cpu_seconds(gateway_pids) - gateway_cpu_before
            load_cpu = time.process_time() - load_cpu_before
            api_cpu = cpu_seconds(api_pids) - api_cpu_before
            machine_cpu = machine_busy_seconds() - machine_before
            # A backend that appeared during the run is counted from zero; one that ended is lost (pools
            # keep theirs open, so that is rare), which makes this a lower bound.
            postgres_cpu_used = sum(used - postgres_before.get(pid, 0.0)
                                    for pid, used in (await postgres_cpu(db, name)).items())
            await stop_profilers(profilers)

            health = [("GET", "/healthz", b"", {})] * len(load)
            cpu_before = cpu_seconds(pids)
            health_elapsed, health_latencies, health_failures = await run_load("127.0.0.1", ports, health, args.c)
            cpu_health = cpu_seconds(pids) - cpu_before

            deposits, distinct = await db.fetchrow(
                "SELECT count(*), count(DISTINCT payment_id) FROM escrow_transactions WHERE type = 'deposit'")
            paid = await db.fetchval("SELECT count(*) FROM payments WHERE status = 'success'")
            integrity = (await http.get("/v1/admin/integrity", headers=admin)).json()
            await db.close()
    except BaseException:
        log_file.flush()
        tail = servers_log.read_text(errors="replace").splitlines()[-40:]
        # A server that died (a signal gives a negative code) leaves nothing in its log: say which did.
        states = [f"{role} (pid {process.pid}): "
                  + ("running" if process.returncode is None else f"exited with {process.returncode}")
                  for role, process in servers()]
        print(f"the run failed; the servers: {'; '.join(states)}; their output is kept in {servers_log}; it ends:",
              *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        processes = [process for _, process in servers()]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):  # one that died already
                process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), timeout=30)
        log_file.close()
    servers_log.unlink()

    accepted_rate = len(load) / accept_elapsed
    health_rate = len(health) / health_elapsed
    credited_rate = args.n / credit_elapsed
    print(f"webhooks bench: N={args.n} C={args.c} sent={len(load)} (duplicates {len(load) - args.n}), "
          f"{describe_shape(args)}, PostgreSQL")
    print(f"  webhooks accepted/s        {accepted_rate:10.1f}   (failures {accept_failures})")
    print(f"  accept latency p50 / p99   {statistics.median(accept_latencies) * 1000:8.1f} ms / "
          f"{percentile(accept_latencies, 0.99) * 1000:.1f} ms")
    print(f"  all deposits credited in   {credit_elapsed:10.2f} s")
    print(f"  credited/s                 {credited_rate:10.1f}")
    if args.backlog:
        print(f"  credited/s from the full inbox {args.n / drain_elapsed:6.1f}   (the workers resumed once every "
              f"webhook was accepted: {drain_elapsed:.2f} s)")
        print(f"  worker CPU per credited    {worker_cpu / args.n * 1000:10.2f} ms   (from the full inbox)")
    split = (f"   (API processes {api_cpu / args.n * 1000:.2f}, worker processes "
             f"{(cpu_webhooks - api_cpu) / args.n * 1000:.2f} at niceness "
             f"{'/'.join(map(str, worker_niceness))})" if args.workers else "")
    print(f"  server CPU per credited    {cpu_webhooks / args.n * 1000:10.2f} ms{split}")
    if args.gateway_process:
        print(f"  gateway CPU per credited   {gateway_cpu / args.n * 1000:10.2f} ms   (the sandbox process, apart)")
    print(f"  PostgreSQL CPU per credited {postgres_cpu_used / args.n * 1000:9.2f} ms   "
          "(the run's backends, this benchmark's polling included)")
    print(f"  load generator CPU per credited {load_cpu / args.n * 1000:5.2f} ms   (this process)")
    print(f"  machine CPU per credited   {machine_cpu / args.n * 1000:10.2f} ms   (all {os.cpu_count()} cores busy "
          f"{machine_cpu / credit_elapsed:.2f} of the time)")
    print(f"  ceiling GET /healthz/s     {health_rate:10.1f}   (failures {health_failures})")
    print(f"  healthz latency p50 / p99  {statistics.median(health_latencies) * 1000:8.1f} ms / "
          f"{percentile(health_latencies, 0.99) * 1000:.1f} ms")
    print(f"  server CPU per healthz     {cpu_health / len(health) * 1000:10.2f} ms")
    print(f"  ratio accepted / healthz   {accepted_rate / health_rate:10.2f}")
    print(f"  ratio credited / healthz   {credited_rate / health_rate:10.2f}")
    print(f"  credited exactly once      {deposits == distinct == paid == args.n} "
          f"(deposits {deposits}, distinct payments {distinct}, successful payments {paid})")
    print(f"  ledger integrity           {integrity['ok']}")
    return {"credited_per_s": credited_rate, "accept_p99_ms": percentile(accept_latencies, 0.99) * 1000,
            "credited_per_healthz": credited_rate / health_rate,
            "ok": deposits == distinct == paid == args.n and bool(integrity["ok"])}


if __name__ == "__main__":
    run_on_service_loop(main())
