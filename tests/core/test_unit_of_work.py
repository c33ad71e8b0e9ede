"""A request whose commit fails is never answered 2xx, and nothing of it is kept."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import BASE_URL
from tests.helpers import put_app


async def test_failed_commit_is_not_answered_2xx(
    app: FastAPI, auth: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = auth("admin-1", admin=True)
    # Starlette re-raises unhandled errors after answering 500; a real server logs them, a test client must not
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)

    async def broken_commit(self: AsyncSession) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(AsyncSession, "commit", broken_commit)
    body = {"name": "X", "owner_id": "o", "currency": "NGN", "share_price": "10.00", "total_shares": 10}
    response = await client.put("/v1/apps/app-x", json=body, headers=admin)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "disk full" not in response.text
    monkeypatch.undo()
    assert (await client.get("/v1/apps/app-x", headers=admin)).status_code == 404
    await put_app(client, admin, app_id="app-x")
    await client.aclose()
