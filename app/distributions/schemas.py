"""Request and answer bodies of distributions, allocations and the monthly revenue report."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.money import AmountInput
from app.core.schemas import Amount, CurrencyCode, CurrencyInput, FromRow, Money, Period, StrictModel, one_of
from app.models.statuses import PayoutStatus

PayoutStatusShown = Annotated[str, one_of(PayoutStatus)]

_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # ASCII digits: `\d` takes any script's


class DistributionIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"period": "2026-05", "currency": "NGN"}]})

    period: Period = Field(description="The month whose revenue is shared out.")
    currency: CurrencyInput = Field(description="The currency of the revenue.")
    amount: AmountInput | None = Field(default=None,
        description="How much to share out (default: all the period's revenue collected in that currency and "
        "not yet shared).")
    dry_run: bool = Field(default=False, description="Answer the figures without writing anything.")

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
    user_id: str = Field(description="The holder.")
    shares: int = Field(description="The holder's shares at the distribution.")
    amount: Amount = Field(description="The holder's part.")
    payout_status: PayoutStatusShown | None


class DistributionOut(FromRow):
    id: str | None = Field(description="The distribution's id; null in a dry run.")
    app_id: str
    period: Period = Field(description="The month shared out.")
    currency: CurrencyCode
    amount: Money = Field(description="The revenue shared out.")
    platform_fee: Money = Field(description="The platform's fee taken first.")
    net_amount: Money = Field(description="What the holders share.")
    allocations: int = Field(description="How many holders get a part.")
    total_shares: int = Field(description="The shares the parts were computed over.")
    status: Annotated[str, one_of(("completed", "dry_run"))] = Field(
        description="`completed`; `dry_run` in a dry run's answer (never stored).")
    dry_run: bool = Field(description="Whether nothing was written.")
    created_at: datetime | None = Field(description="When it was made; null in a dry run.")
    preview: list[AllocationOut] | None = Field(default=None, description="A dry run: the parts it would make.")


class AllocationPage(BaseModel):
    items: list[AllocationOut]
    next_cursor: str | None


class MyAllocationOut(BaseModel):
    distribution_id: str = Field(description="The distribution it is part of.")
    app_id: str
    period: Period = Field(description="The month shared out.")
    shares: int = Field(description="The caller's shares at the distribution.")
    amount: Amount = Field(description="The caller's part.")
    currency: CurrencyCode
    payout_status: PayoutStatusShown | None


class MyAllocationPage(BaseModel):
    items: list[MyAllocationOut]
    next_cursor: str | None


class DistributionList(BaseModel):
    items: list[DistributionOut]
    next_cursor: str | None = None


class MonthlyRevenueItem(BaseModel):
    month: Period = Field(description="The month (of the revenue's period).")
    currency: CurrencyCode
    revenue_collected: Amount = Field(description="Revenue paid in for the month.")
    distributed: Amount = Field(description="Revenue shared out to holders.")
    platform_fees: Amount = Field(description="The platform's fees taken.")
    paid_out: Amount = Field(description="What the payouts of those parts paid.")
    owed: Amount = Field(description="Parts not paid out yet.")
    recipients: int = Field(description="How many holders got a part.")


class MonthlyRevenueReport(BaseModel):
    year: int = Field(description="The year reported.")
    app_id: str | None = Field(description="The app reported on; null for all.")
    items: list[MonthlyRevenueItem] = Field(description="One entry per month and currency.")
