"""Fixtures of the event tests: the in-process receiver every delivery reaches."""

from __future__ import annotations

import httpx
import pytest

from app.core.config import Settings
from app.events import delivery
from tests.events.support import Receiver


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """Every delivery goes to this receiver, in process: nothing leaves the machine."""
    target = Receiver()

    def client(settings: Settings) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(target), follow_redirects=False,
                                 timeout=settings.webhook_delivery_timeout_seconds)

    monkeypatch.setattr(delivery, "make_client", client)
    return target
