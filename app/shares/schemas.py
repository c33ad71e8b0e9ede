"""Request and answer bodies of holdings, share transfers and the cap table."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.core.money import AmountInput
from app.core.schemas import FromRow, Money, StrictModel


class HoldingOut(BaseModel):
    app_id: str
    shares: int
    reserved_shares: int
    acquired_at: datetime


class HoldingsOut(BaseModel):
    items: list[HoldingOut]
    next_cursor: str | None = None


class ShareTransferIn(StrictModel):
    app_id: str = Field(min_length=1, max_length=64)
    buyer_id: str = Field(min_length=1, max_length=128)
    shares: int = Field(gt=0, le=10**12)
    price_per_share: AmountInput


class ShareTransferOut(FromRow):
    id: str
    app_id: str
    seller_id: str
    buyer_id: str
    shares: int
    price_per_share: Money
    amount: Money
    platform_fee: Money
    seller_receives: Money
    currency: str
    status: str
    payment_id: str | None
    expires_at: datetime
    completed_at: datetime | None
    created_at: datetime


class CapTableItem(BaseModel):
    user_id: str
    shares: int
    percentage: str


class CapTableOut(BaseModel):
    app_id: str
    total_shares: int
    shares_issued: int
    as_of: datetime | None
    percentage_rounding: str
    items: list[CapTableItem]
