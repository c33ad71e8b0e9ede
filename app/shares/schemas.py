"""Request and answer bodies of holdings, share transfers and the cap table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.core.money import AmountInput
from app.core.schemas import CurrencyCode, FromRow, Money, PercentageText, StrictModel, one_of
from app.models.statuses import ShareTransferStatus


class HoldingOut(BaseModel):
    app_id: str
    shares: int = Field(description="Shares held.")
    reserved_shares: int = Field(description="Of those, shares reserved by pending offers to buyers.")
    acquired_at: datetime = Field(description="When the holding was first acquired.")


class HoldingsOut(BaseModel):
    items: list[HoldingOut]
    next_cursor: str | None = None


class ShareTransferIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "app_id": "app-1", "buyer_id": "buyer-1", "shares": 2, "price_per_share": "1200.00"}]})

    app_id: str = Field(min_length=1, max_length=64, description="The app whose shares are offered.")
    buyer_id: str = Field(min_length=1, max_length=128, description="The buyer's user id.")
    shares: int = Field(gt=0, le=10**12, description="How many shares.")
    price_per_share: AmountInput = Field(description="The price asked per share, in the app's currency.")


class ShareTransferOut(FromRow):
    id: str
    app_id: str
    seller_id: str = Field(description="The seller's user id.")
    buyer_id: str = Field(description="The buyer's user id.")
    shares: int = Field(description="How many shares.")
    price_per_share: Money = Field(description="The price per share.")
    amount: Money = Field(description="What the buyer pays.")
    platform_fee: Money = Field(description="The platform's fee on it.")
    seller_receives: Money = Field(description="What the seller is paid out.")
    currency: CurrencyCode
    status: Annotated[str, one_of(ShareTransferStatus)] = Field(
        description="`pending` until the buyer pays, then `completed`; or `cancelled`, `expired`.")
    payment_id: str | None = Field(description="The buyer's payment, once made.")
    expires_at: datetime = Field(description="When the offer lapses unpaid.")
    completed_at: datetime | None = Field(description="When the shares moved.")
    created_at: datetime


class CapTableItem(BaseModel):
    user_id: str = Field(description="The holder.")
    shares: int = Field(description="Shares held.")
    percentage: PercentageText = Field(description="Their share of the shares issued.")


class CapTableOut(BaseModel):
    app_id: str
    total_shares: int = Field(description="How many shares the app has in all.")
    shares_issued: int = Field(description="Shares held by investors.")
    as_of: datetime | None = Field(description="The instant asked for; null for now.")
    percentage_rounding: str = Field(description="How the percentages were rounded so that they add up to 100.00.")
    items: list[CapTableItem] = Field(description="One entry per holder.")
