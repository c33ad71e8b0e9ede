"""The worker as a process of its own (`python -m app worker`): what it tells its jobs about where it runs."""

from __future__ import annotations

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
    monkeypatch.setattr(worker.Worker, "drain", drain)
    await worker.main(once=True)

    [rt] = drained
    assert rt.worker_alone
