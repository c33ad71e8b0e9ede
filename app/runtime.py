"""What a request or a job needs besides its session: settings, database, gateway, cipher, and the
tables `app/wiring.py` fills in (payment types, webhook handlers, refund hooks) as typed extensions."""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.batching import GroupCommit
from app.core.config import Settings
from app.core.crypto import FieldCipher
from app.core.db import Database
from app.gateway.client import PaystackClient
from app.gateway.types import Bank

T = TypeVar("T")


class Extensions:
    """Tables that lower layers define the type of and the wiring fills in: a domain asks
    `rt.extension(PaymentTypes)` for the payment types without importing the domains that provide them."""

    def __init__(self, *tables: object) -> None:
        self._tables: dict[type, object] = {type(table): table for table in tables}

    def replacing(self, table: object) -> Extensions:
        """These tables with `table` in place of the one of its type (tests swap one handler this way)."""
        return Extensions(*{**self._tables, type(table): table}.values())

    def get(self, kind: type[T]) -> T:
        table = self._tables.get(kind)
        if table is None:
            raise LookupError(f"no {kind.__name__} wired into this runtime (see app/wiring.py)")
        assert isinstance(table, kind)
        return table


@dataclass
class Runtime:
    settings: Settings
    db: Database
    gateway: PaystackClient
    cipher: FieldCipher
    extensions: Extensions = field(default_factory=Extensions)
    # set when the in-process worker runs: wakes it as soon as there is work
    work_available: asyncio.Event = field(default_factory=asyncio.Event)
    _group_commits: dict[str, GroupCommit[Any]] = field(default_factory=dict)
    # (currency, type) -> (when it was read, monotonic seconds; the gateway's bank list): see payouts.flows
    bank_lists: dict[tuple[str, str | None], tuple[float, list[Bank]]] = field(default_factory=dict)
    # Set once the gateway showed that transfers need an OTP (a transfer answered `otp`, or a bulk transfer was
    # refused for it): Paystack takes bulk transfers only with OTP off, so distributions go one by one.
    transfer_otp_seen: bool = False

    def extension(self, kind: type[T]) -> T:
        return self.extensions.get(kind)

    def notify_worker(self) -> None:
        self.work_available.set()

    def group_commit(
        self,
        name: str,
        work: Callable[[AsyncSession, list[Any]], Awaitable[list[Any]]],
        *,
        committed: Callable[[int], None] = lambda size: None,
    ) -> GroupCommit[Any]:
        """This runtime's group commit for one kind of job: made on first use, then shared by every caller."""
        commits = self._group_commits.get(name)
        if commits is None:
            commits = self._group_commits[name] = GroupCommit(self.db, work, committed=committed)
        return commits


def build_runtime(
    settings: Settings, extensions: Extensions, gateway_transport: httpx.AsyncBaseTransport | None = None,
) -> Runtime:
    return Runtime(
        settings=settings,
        db=Database(settings),
        gateway=PaystackClient(
            base_url=settings.gateway_base_url,
            secret_key=settings.paystack_secret_key.get_secret_value(),
            timeout=settings.gateway_timeout_seconds,
            max_retries=settings.gateway_max_retries,
            max_connections=settings.gateway_connections,
            transport=gateway_transport,
        ),
        cipher=FieldCipher.from_settings(settings),
        extensions=extensions,
    )


@functools.cache  # once per process: tests build many apps in one
def freeze_long_lived_objects() -> None:
    """What exists once the process has started (modules, routes, mappers, settings) lives as long as
    the process: `gc.freeze` keeps the collector from walking it on every full collection, which
    paused requests for tens of milliseconds (accept p99 in bench/webhooks.py: 101-151 ms before,
    28-49 ms after). Remembered, not asked of `gc.get_freeze_count()`, which walks every frozen
    object (about 25 ms each app start)."""
    gc.collect()
    gc.freeze()
