"""Pausing the cyclic garbage collector around bulk work, and giving it back."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import pytest

from app.core.memory import collector_paused


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_the_collector_is_paused_inside_and_runs_again_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_end_with_the_last_one() -> None:
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second distribution is still building its rows
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_an_error_inside_gives_the_collector_back() -> None:
    with contextlib.suppress(RuntimeError), collector_paused():
        raise RuntimeError("refused")
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
