"""The worker as a process of its own (`python -m app worker`): what it tells its jobs about where it runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app import worker
from app.core.config import Settings
from app.runtime import Runtime


async def test_a_worker_process_runs_its_jobs_knowing_no_webhook_intake_shares_its_event_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbox handles more events at once there than inside the API process (tests/payments/test_webhooks.py)."""
    drained: list[Runtime] = []

    async def drain(self: worker.Worker) -> int:
        drained.append(self.rt)
        return 0

    monkeypatch.setattr(worker, "get_settings", lambda: settings)
    monkeypatch.setattr(worker.os, "nice", lambda niceness: None)  # not this test process's priority
    monkeypatch.setattr(worker.Worker, "drain", drain)
    await worker.main(once=True)

    [rt] = drained
    assert rt.worker_alone


async def no_work(self: worker.Worker) -> int:
    return 0


@pytest.mark.parametrize(("overrides", "lowered_by"), [({}, [10]), ({"worker_niceness": 0}, [])])
async def test_a_worker_process_lowers_its_cpu_priority_by_worker_niceness(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, int], lowered_by: list[int],
) -> None:
    """By default, so that on a machine shared with the API webhooks are answered first; 0 leaves it alone."""
    lowered: list[int] = []
    monkeypatch.setattr(worker.os, "nice", lowered.append)
    monkeypatch.setattr(worker, "get_settings", lambda: make_settings(**overrides))
    monkeypatch.setattr(worker.Worker, "drain", no_work)
    await worker.main(once=True)

    assert lowered == lowered_by
