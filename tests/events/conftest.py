"""Fixtures of the event tests: the in-process receiver every delivery reaches."""

from __future__ import annotations

import pytest

from app.events import delivery
from tests.events.support import Receiver, asgi_post


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """Every delivery goes to this receiver, in process: nothing leaves the machine."""
    target = Receiver()
    monkeypatch.setattr(delivery, "post", asgi_post(target))
    return target
