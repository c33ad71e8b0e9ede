"""What the benchmarks share: a fresh database, a runtime that never calls a gateway, percentiles."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.config import Settings  # noqa: E402
from app.core.crypto import FieldCipher  # noqa: E402
from app.core.db import Database  # noqa: E402
from app.gateway.client import PaystackClient  # noqa: E402
from app.runtime import Runtime  # noqa: E402


async def fresh_database(pg: str, name: str) -> None:
    """Drop and create database `name` on `pg` (user@host:port)."""
    conn = await asyncpg.connect(f"postgresql://{pg}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def offline_runtime(url: str, **settings: object) -> Runtime:
    """The service's runtime on `url`; its gateway points nowhere (service-layer benchmarks queue
    payouts and refunds for a worker that does not run)."""
    config = Settings(_env_file=None, database_url=url, **settings)
    gateway = PaystackClient(base_url="http://127.0.0.1:9", secret_key="sk_test_bench")
    return Runtime(settings=config, db=Database(config), gateway=gateway, cipher=FieldCipher.from_settings(config))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
