from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class HoldingOut(BaseModel):
    app_id: str
    shares: int
    reserved_shares: int
    acquired_at: datetime


class HoldingsOut(BaseModel):
    items: list[HoldingOut]
    next_cursor: str | None = None
