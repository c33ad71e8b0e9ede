"""The queues' shared backoff doubles from its first wait and stops at its ceiling."""

from __future__ import annotations

from datetime import timedelta

from app.core.outbox import backoff


def test_backoff_doubles_from_the_first_wait_up_to_the_ceiling() -> None:
    waits = [backoff(attempt, first=30, most=3600) for attempt in range(1, 10)]
    assert waits[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert waits[-1] == timedelta(seconds=3600)
    assert backoff(0, first=30, most=3600) == timedelta(seconds=30)  # no attempt yet: the first wait
    assert backoff(10_000, first=1, most=3600) == timedelta(seconds=3600)  # never overflows
