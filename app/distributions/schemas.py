"""Request and answer bodies of revenue declarations, distributions, allocations and the monthly revenue report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.money import AmountInput
from app.core.schemas import (
    Amount,
    CurrencyCode,
    CurrencyInput,
    FromRow,
    Money,
    Period,
    StrictModel,
    check_callback_url,
    check_email,
    check_period,
    one_of,
    upper_code,
)
from app.models.statuses import PayoutStatus, RevenueDeclarationStatus

PayoutStatusShown = Annotated[str, one_of(PayoutStatus)]



class RevenueDeclarationIn(StrictModel):
    """What the app earned in `period` (YYYY-MM, UTC months), in the app's currency. `email` is where the
    gateway's checkout sends the owner's receipt (default: the caller's token's email)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"period": "2026-05", "currency": "NGN", "gross_revenue": "10000.00"}]})

    period: Period = Field(description="The month the revenue was earned in (UTC); the current month may be "
                                       "declared, a future one may not.")
    currency: CurrencyInput = Field(description="The app's currency.")
    gross_revenue: AmountInput = Field(description="What the app earned in the month, before anything is shared.")
    email: str | None = Field(default=None, max_length=320,
                              description="Where the checkout sends the owner's receipt (default: the token's email).")
    callback_url: str | None = Field(default=None, max_length=2048,
                                     description="Where the checkout sends the owner back to (http or https).")

    _period = field_validator("period")(check_period)
    _currency = field_validator("currency")(upper_code)
    _email = field_validator("email")(check_email)
    _callback_url = field_validator("callback_url")(check_callback_url)


class RevenueDeclarationOut(FromRow):
    """`pool` = `gross_revenue` x `investor_shares` / `total_shares`, rounded down to the minor unit, with
    the holdings of everyone but the app's owner as at `holdings_as_of`. `status`: `pending` (its payment
    of exactly `pool` is awaited at `payment_url`), `paid` (the pool was distributed: `distribution_id`),
    `recorded` (a pool of zero: nothing to collect, no payment), `replaced` (by `replaced_by`)."""

    id: str
    app_id: str
    period: Period = Field(description="The month declared.")
    currency: CurrencyCode
    gross_revenue: Money = Field(description="What the owner declared the app earned.")
    investor_shares: int = Field(description="Shares held by everyone but the owner at `holdings_as_of`.")
    total_shares: int = Field(description="The app's total shares.")
    pool: Money = Field(description="The investors' part: gross x investor shares / total shares, rounded down.")
    status: Annotated[str, one_of(RevenueDeclarationStatus)] = Field(
        description="`pending` (its payment is awaited), `paid`, `recorded` (nothing to collect), `replaced`.")
    payment_reference: str | None = Field(description="The payment collecting the pool from the owner.")
    payment_url: str | None = Field(description="The checkout where the owner pays the pool.")
    holdings_as_of: datetime = Field(description="The instant whose holdings priced the pool.")
    replaces: str | None = Field(description="The unpaid declaration this one corrected.")
    replaced_by: str | None = Field(description="The declaration that corrected this one.")
    distribution_id: str | None = Field(description="The distribution of the paid pool.")
    paid_at: datetime | None = Field(description="When the pool was paid.")
    created_by: str = Field(description="Who declared it.")
    created_at: datetime


class DistributionIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"period": "2026-05", "currency": "NGN"}]})

    period: Period = Field(description="The month whose revenue is shared out.")
    currency: CurrencyInput = Field(description="The currency of the revenue.")
    amount: AmountInput | None = Field(default=None,
        description="How much to share out (default: all the period's revenue collected in that currency and "
        "not yet shared).")
    dry_run: bool = Field(default=False, description="Answer the figures without writing anything.")

    _period = field_validator("period")(check_period)
    _currency = field_validator("currency")(upper_code)


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
    declared_gross_revenue: Amount = Field(
        description="What owners declared the app earned in the month (live declarations).")
    investor_pool: Amount = Field(description="The investors' part of the declared revenue.")


class MonthlyRevenueReport(BaseModel):
    year: int = Field(description="The year reported.")
    app_id: str | None = Field(description="The app reported on; null for all.")
    items: list[MonthlyRevenueItem] = Field(description="One entry per month and currency.")
