"""Request and answer bodies of escrow: transactions, milestones, releases, refunds, disputes, summaries
and statements."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from app.core.money import FULL_PERCENT, AmountInput, MoneyError, format_percentage, parse_percentage
from app.core.schemas import FromRow, Money, OptionalMoney, Percentage, StrictModel

EscrowType = Literal["deposit", "release", "refund"]


class EscrowTransactionOut(FromRow):
    id: str
    type: str
    app_id: str
    investor_id: str
    amount: Money
    currency: str
    status: str
    payment_gateway: str
    gateway_reference: str | None
    # A deposit's own figures; null on a release or refund row.
    shares: int | None
    released: OptionalMoney
    refunded: OptionalMoney
    frozen: OptionalMoney
    remaining: OptionalMoney
    deposit_id: str | None
    milestone_id: str | None
    created_at: datetime

    @model_validator(mode="after")
    def _deposit_figures_only_on_deposits(self) -> EscrowTransactionOut:
        if self.type != "deposit":
            self.shares = self.released = self.refunded = self.frozen = self.remaining = None
        return self


class EscrowTransactionPage(BaseModel):
    items: list[EscrowTransactionOut]
    next_cursor: str | None


class MilestoneIn(StrictModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    release_percentage: str
    due_date: date | None = None

    @field_validator("release_percentage", mode="before")
    @classmethod
    def _percentage(cls, value: object) -> str:
        hundredths = _percentage_hundredths(value)
        if not 0 < hundredths <= FULL_PERCENT:
            raise ValueError("release_percentage must be above 0 and at most 100")
        return format_percentage(hundredths)


class MilestoneComplete(StrictModel):
    evidence: str = Field(min_length=1, max_length=5000)


class MilestoneOut(FromRow):
    id: str
    app_id: str
    title: str
    description: str
    release_percentage: Percentage
    due_date: date | None
    status: str
    evidence: str | None
    completed_at: datetime | None
    overdue: bool = False  # past its due date and still pending
    overdue_at: datetime | None = None
    created_at: datetime


class ReleaseIn(StrictModel):
    milestone_id: str = Field(min_length=1, max_length=40)
    transaction_id: str | None = Field(default=None, max_length=40)
    release_percentage: str | None = None

    @field_validator("release_percentage", mode="before")
    @classmethod
    def _percentage(cls, value: object) -> str | None:
        if value is None:
            return None
        hundredths = _percentage_hundredths(value)
        if not 0 < hundredths <= FULL_PERCENT:
            raise ValueError("release_percentage must be above 0 and at most 100")
        return format_percentage(hundredths)


class ApprovalIn(StrictModel):
    decision: Literal["approve", "reject"]
    note: str | None = Field(default=None, max_length=1000)


class ApprovalOut(BaseModel):
    approver_id: str
    decision: str
    is_admin: bool
    note: str | None
    created_at: datetime


class ReleaseItemOut(BaseModel):
    transaction_id: str
    amount: str


class ReleaseOut(BaseModel):
    id: str
    app_id: str
    milestone_id: str
    transaction_id: str | None
    status: str
    amount: str
    currency: str
    release_percentage: str
    required_approvals: int
    needs_admin_approval: bool
    approvals: list[ApprovalOut]
    items: list[ReleaseItemOut]
    requested_by: str
    executed_at: datetime | None
    created_at: datetime


class RefundIn(StrictModel):
    amount: AmountInput | None = None
    reason: str = Field(default="", max_length=500)


class RefundOut(BaseModel):
    id: str
    transaction_id: str | None
    escrow_transaction_id: str | None
    payment_reference: str | None
    amount: str
    currency: str
    status: str
    reason: str
    created_at: datetime


class DisputeIn(StrictModel):
    transaction_id: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=1000)
    amount: AmountInput | None = None


class DisputeResolve(StrictModel):
    # `chargeback` (chargebacks only): the bank took `amount` (default: all that is disputed) back.
    outcome: Literal["refund", "partial_refund", "release", "dismiss", "chargeback"]
    amount: AmountInput | None = None
    note: str | None = Field(default=None, max_length=1000)


class DisputeOut(FromRow):
    id: str
    transaction_id: str
    app_id: str
    investor_id: str
    amount: Money
    currency: str
    reason: str
    status: str
    source: str
    outcome: str | None
    outcome_amount: OptionalMoney
    resolution_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    # Chargebacks: Paystack's resolution, and why the money was left frozen for an admin.
    gateway_resolution: str | None
    flagged: bool
    flag_reason: str | None


class EscrowSummaryItem(BaseModel):
    currency: str
    deposited: str
    released: str
    refunded: str
    held: str
    frozen: str
    available: str


class EscrowSummary(BaseModel):
    app_id: str
    items: list[EscrowSummaryItem]


class StatementLine(BaseModel):
    date: datetime
    type: str
    id: str
    investor_id: str
    amount: str
    balance: str


class Statement(BaseModel):
    app_id: str
    currency: str
    from_date: date | None
    to_date: date | None
    opening_balance: str
    items: list[StatementLine]
    closing_balance: str


def _percentage_hundredths(value: object) -> int:
    try:
        return parse_percentage(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None
