"""What the benchmarks share: a fresh database (and dropping it), a runtime that never calls a gateway,
percentiles, a free port, a cheap HTTP/1.1 client and the wait for a started server."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import wiring  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.core.crypto import FieldCipher  # noqa: E402
from app.core.db import Database  # noqa: E402
from app.gateway.client import PaystackClient  # noqa: E402
from app.runtime import Runtime  # noqa: E402

T = TypeVar("T")


def run_database_name(prefix: str) -> str:
    """A database name of this run's own: two runs on one server (developers, CI) never drop each other's."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"


async def fresh_database(pg: str, name: str) -> None:
    """Drop and create database `name` on `pg` (user@host:port)."""
    conn = await asyncpg.connect(f"postgresql://{pg}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(pg: str, name: str) -> None:
    """Drop database `name` on `pg` (user@host:port), closing what is still connected to it."""
    conn = await asyncpg.connect(f"postgresql://{pg}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def analyze(dsn: str) -> None:
    """Statistics for every table, as a live database has them (autovacuum analyzes a table soon after a
    tenth of it changed). A benchmark's freshly seeded tables have none, and the planner takes them for a
    few rows: it locked a batch's deposits by reading every deposit, and its charges by a scan."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def run_on_service_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop, the loop the service runs on under uvicorn and in the worker, when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def offline_runtime(url: str, **settings: object) -> Runtime:
    """The service's runtime on `url`; its gateway points nowhere (service-layer benchmarks queue
    payouts and refunds for a worker that does not run)."""
    config = Settings(_env_file=None, database_url=url, **settings)
    gateway = PaystackClient(base_url="http://127.0.0.1:9", secret_key="sk_test_bench")
    return Runtime(settings=config, db=Database(config), gateway=gateway, cipher=FieldCipher.from_settings(config),
                   extensions=wiring.EXTENSIONS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_healthy(http: httpx.AsyncClient, deadline: float = 60,
                       process: asyncio.subprocess.Process | None = None) -> None:
    """Until GET /healthz answers 200; RuntimeError after `deadline` seconds, or as soon as `process`
    (the server, when the caller started it) has exited."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before it became healthy")
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("server did not become healthy")


class KeepAliveConnection:
    """A bare HTTP/1.1 keep-alive client: the load generator must cost the machine far less
    than the server it measures (httpx spends milliseconds of CPU per request)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
