"""The worker's queues (webhook inbox, refunds, payouts) share one shape: rows due at `available_at`,
claimed with SKIP LOCKED so that several workers share them, leased to the claiming worker (another takes
the row once the lease runs out), and retried after a doubling backoff."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select

S = TypeVar("S", bound=Select[Any])


def due(stmt: S, available_at: ColumnElement[datetime], now: datetime, *, limit: int, of: Any = None) -> S:
    """`stmt` (ordered as the queue is served) narrowed to the rows due at `now`, locked for this worker
    with SKIP LOCKED (rows another worker holds are left to it)."""
    return stmt.where(available_at <= now).limit(limit).with_for_update(skip_locked=True, of=of)


def lease(seconds: float) -> timedelta:
    """How long a claimed row is this worker's: if it dies, the row is due again after that."""
    return timedelta(seconds=seconds)


def backoff(attempts: int, *, first: float, most: float) -> timedelta:
    """The wait before attempt `attempts + 1`: `first` seconds, doubling with each attempt, at most `most`."""
    return timedelta(seconds=min(first * 2 ** min(max(attempts - 1, 0), 32), most))
