"""The worker as a process of its own (`python -m app worker`): its CPU priority."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app import worker
from app.core.config import Settings


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
