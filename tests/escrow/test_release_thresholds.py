"""The admin's approval threshold per currency (ESCROW_RELEASE_THRESHOLDS): a currency's own value wins,
DEFAULT_CURRENCY falls back to ESCROW_RELEASE_THRESHOLD, and any other currency without a value has no
threshold: every release in it needs an admin (the safe side)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.core.config import Settings
from tests.escrow.test_releases import completed_milestone, new_release, users  # noqa: F401
from tests.helpers import invest, pay, put_app

PER_CURRENCY = {"enable_multi_currency": True, "default_currency": "NGN", "escrow_release_threshold": "20000",
                "escrow_release_thresholds": "usd=1000, GHS=100000"}


def settings_with(**values: Any) -> Settings:
    return Settings(_env_file=None, database_url="sqlite+aiosqlite:///:memory:", **values)


def test_a_currencys_own_threshold_wins_and_the_default_currency_falls_back() -> None:
    settings = settings_with(**PER_CURRENCY)
    assert settings.release_threshold("USD") == Decimal("1000")
    assert settings.release_threshold("GHS") == Decimal("100000")
    assert settings.release_threshold("NGN") == Decimal("20000")  # DEFAULT_CURRENCY: ESCROW_RELEASE_THRESHOLD
    assert settings.release_threshold("KES") is None  # nothing set: every release needs an admin


@pytest.mark.parametrize("raw", ["USD", "USD=", "XYZ=10", "USD=ten", "USD=-1", "USD=NaN", "USD=1000;GHS=5"])
def test_a_malformed_list_stops_the_settings_from_loading(raw: str) -> None:
    with pytest.raises(ValidationError, match="ESCROW_RELEASE_THRESHOLDS"):
        settings_with(escrow_release_thresholds=raw)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return PER_CURRENCY


async def paid_app(client: httpx.AsyncClient, app: FastAPI, auth: Any, admin: dict[str, str], app_id: str,
                   currency: str, shares: int) -> None:
    """An app priced 100.00 a share in `currency`, and one paid investment of `shares` in it."""
    await put_app(client, admin, app_id, currency=currency, share_price="100.00")
    await pay(client, app, await invest(client, auth("investor-1"), app_id=app_id, shares=shares, currency=currency))


async def test_a_usd_release_above_its_threshold_needs_an_admin(
    client: httpx.AsyncClient, app: FastAPI, auth: Any, users: dict[str, dict[str, str]]  # noqa: F811
) -> None:
    await paid_app(client, app, auth, users["admin"], "app-usd", "USD", 30)  # 3,000.00
    owner = users["owner"]
    above = await new_release(client, owner, await completed_milestone(client, owner, "40", "app-usd"))  # 1,200
    below = await new_release(client, owner, await completed_milestone(client, owner, "20", "app-usd"))  # 600
    assert (above["amount"], above["currency"], above["needs_admin_approval"]) == ("1200.00", "USD", True)
    assert (below["amount"], below["needs_admin_approval"]) == ("600.00", False)


async def test_a_currency_without_a_threshold_always_needs_an_admin(
    client: httpx.AsyncClient, app: FastAPI, auth: Any, users: dict[str, dict[str, str]]  # noqa: F811
) -> None:
    await paid_app(client, app, auth, users["admin"], "app-kes", "KES", 10)  # 1,000.00
    owner = users["owner"]
    tiny = await new_release(client, owner, await completed_milestone(client, owner, "1", "app-kes"))  # 10.00
    assert (tiny["amount"], tiny["currency"], tiny["needs_admin_approval"]) == ("10.00", "KES", True)
