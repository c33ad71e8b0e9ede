"""Request and answer bodies of revenue declarations, distributions, allocations and the monthly revenue report."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from app.core.money import AmountInput
from app.core.schemas import FromRow, Money, StrictModel

_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # ASCII digits: `\d` takes any script's
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")


class RevenueDeclarationIn(StrictModel):
    """What the app earned in `period` (YYYY-MM, UTC months), in the app's currency. `email` is where the
    gateway's checkout sends the owner's receipt (default: the caller's token's email)."""

    period: str
    currency: str = Field(min_length=3, max_length=3)
    gross_revenue: AmountInput
    email: str | None = Field(default=None, max_length=320)
    callback_url: str | None = Field(default=None, max_length=2048)

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

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("not a valid email address")
        return value

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s]+$", value):
            raise ValueError("callback_url must be an http(s) URL")
        return value


class RevenueDeclarationOut(FromRow):
    """`pool` = `gross_revenue` x `investor_shares` / `total_shares`, rounded down to the minor unit, with
    the holdings of everyone but the app's owner as at `holdings_as_of`. `status`: `pending` (its payment
    of exactly `pool` is awaited at `payment_url`), `paid` (the pool was distributed: `distribution_id`),
    `recorded` (a pool of zero: nothing to collect, no payment), `replaced` (by `replaced_by`)."""

    id: str
    app_id: str
    period: str
    currency: str
    gross_revenue: Money
    investor_shares: int
    total_shares: int
    pool: Money
    status: str
    payment_reference: str | None
    payment_url: str | None
    holdings_as_of: datetime
    replaces: str | None
    replaced_by: str | None
    distribution_id: str | None
    paid_at: datetime | None
    created_by: str
    created_at: datetime


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
    # What owners declared the app earned in the month (live declarations), and the investors' part of it.
    declared_gross_revenue: str
    investor_pool: str


class MonthlyRevenueReport(BaseModel):
    year: int
    app_id: str | None
    items: list[MonthlyRevenueItem]
