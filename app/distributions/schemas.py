"""Request and answer bodies of distributions, allocations and the monthly revenue report."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from app.core.money import AmountInput
from app.core.schemas import FromRow, Money, StrictModel

_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # ASCII digits: `\d` takes any script's


class DistributionIn(StrictModel):
    period: str
    currency: str = Field(min_length=3, max_length=3)
    amount: AmountInput | None = None
    dry_run: bool = False

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        if not _PERIOD.fullmatch(value):
            raise ValueError("period must be YYYY-MM")
        return value

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class AllocationOut(BaseModel):
    user_id: str
    shares: int
    amount: str
    payout_status: str | None


class DistributionOut(FromRow):
    id: str | None
    app_id: str
    period: str
    currency: str
    amount: Money
    platform_fee: Money
    net_amount: Money
    allocations: int
    total_shares: int
    status: str
    dry_run: bool
    created_at: datetime | None
    preview: list[AllocationOut] | None = None


class AllocationPage(BaseModel):
    items: list[AllocationOut]
    next_cursor: str | None


class MyAllocationOut(BaseModel):
    distribution_id: str
    app_id: str
    period: str
    shares: int
    amount: str
    currency: str
    payout_status: str | None


class MyAllocationPage(BaseModel):
    items: list[MyAllocationOut]
    next_cursor: str | None


class DistributionList(BaseModel):
    items: list[DistributionOut]
    next_cursor: str | None = None


class MonthlyRevenueItem(BaseModel):
    month: str
    currency: str
    revenue_collected: str
    distributed: str
    platform_fees: str
    paid_out: str
    owed: str
    recipients: int


class MonthlyRevenueReport(BaseModel):
    year: int
    app_id: str | None
    items: list[MonthlyRevenueItem]
