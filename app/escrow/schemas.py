"""Request and answer bodies of escrow: transactions, milestones, releases, refunds, disputes, summaries
and statements."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.money import FULL_PERCENT, AmountInput, MoneyError, format_percentage, parse_percentage
from app.core.schemas import (
    Amount,
    CurrencyCode,
    FromRow,
    Money,
    OptionalMoney,
    Percentage,
    PercentageInput,
    PercentageText,
    StrictModel,
    one_of,
)
from app.models.statuses import DisputeStatus, MilestoneStatus, ReleaseStatus

EscrowType = Literal["deposit", "release", "refund"]
# An escrow row's status: a deposit's, a release's (`completed`) or a refund row's.
ESCROW_STATUSES = ("held", "released", "refunded", "closed", "completed", "pending", "processed", "failed")
DisputeOutcome = Literal["refund", "partial_refund", "release", "dismiss", "chargeback"]


class EscrowTransactionOut(FromRow):
    id: str
    type: Annotated[str, one_of(get_args(EscrowType))] = Field(
        description="`deposit` (an investment held in escrow), `release` (money released to the owner) or "
        "`refund` (money returned to the investor).")
    app_id: str
    investor_id: str
    amount: Money = Field(description="The amount, in major units of `currency`.")
    currency: CurrencyCode
    status: Annotated[str, one_of(ESCROW_STATUSES)] = Field(
        description="A deposit: `held`, then `released`, `refunded` or `closed` when nothing is left; a "
        "release: `completed`; a refund: `pending`, `processed` or `failed`.")
    payment_gateway: str = Field(description="The gateway the money came through (`paystack`).")
    gateway_reference: str | None = Field(description="The payment's reference at the gateway.")
    # A deposit's own figures; null on a release or refund row.
    shares: int | None = Field(description="A deposit: the shares it bought; null otherwise.")
    released: OptionalMoney = Field(description="A deposit: how much of it was released; null otherwise.")
    refunded: OptionalMoney = Field(description="A deposit: how much of it was refunded; null otherwise.")
    frozen: OptionalMoney = Field(description="A deposit: how much of it is frozen by open disputes; null otherwise.")
    remaining: OptionalMoney = Field(description="A deposit: how much of it is still held; null otherwise.")
    deposit_id: str | None = Field(description="A release or refund: the deposit it comes out of.")
    milestone_id: str | None = Field(description="A release: the milestone it was for.")
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
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "title": "Beta launch", "description": "The beta is live for 100 users.", "release_percentage": "25.00",
        "due_date": "2026-09-30",
    }]})

    title: str = Field(min_length=1, max_length=200, description="The milestone's title.")
    description: str = Field(default="", max_length=5000, description="What the milestone means, in words.")
    release_percentage: PercentageInput = Field(
        description="The share of the app's escrow its completion releases, above 0 and at most 100; an app's "
        "milestones add up to at most 100.")
    due_date: date | None = Field(default=None, description="When it is due, if it has a date.")

    @field_validator("release_percentage", mode="before")
    @classmethod
    def _percentage(cls, value: object) -> str:
        hundredths = _percentage_hundredths(value)
        if not 0 < hundredths <= FULL_PERCENT:
            raise ValueError("release_percentage must be above 0 and at most 100")
        return format_percentage(hundredths)


class MilestoneComplete(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"evidence": "https://example.com/beta-release-notes"}]})

    evidence: str = Field(min_length=1, max_length=5000,
        description="What shows the milestone is done (text or a link).")


class MilestoneOut(FromRow):
    id: str
    app_id: str
    title: str = Field(description="The milestone's title.")
    description: str = Field(description="What the milestone means, in words.")
    release_percentage: Percentage = Field(description="The share of the app's escrow its completion releases.")
    due_date: date | None = Field(description="When it is due.")
    status: Annotated[str, one_of(MilestoneStatus)] = Field(
        description="`pending`, then `completed` by the owner, then `released`.")
    evidence: str | None = Field(description="What the owner gave as evidence on completing it.")
    completed_at: datetime | None = Field(description="When it was completed.")
    overdue: bool = Field(default=False, description="Past its due date and still pending.")
    overdue_at: datetime | None = Field(default=None, description="When the worker saw it pass its due date.")
    created_at: datetime


class ReleaseIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"milestone_id": "ms_0123456789abcdef"}]})

    milestone_id: str = Field(min_length=1, max_length=40, description="The completed milestone the release is for.")
    transaction_id: str | None = Field(default=None, max_length=40,
        description="One deposit to release from (default: all the app's deposits).")
    release_percentage: PercentageInput | None = Field(default=None,
        description="The share to release (default: the milestone's).")

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
    model_config = ConfigDict(json_schema_extra={"examples": [{"decision": "approve", "note": "Milestone verified."}]})

    decision: Literal["approve", "reject"] = Field(description="`approve` or `reject`.")
    note: str | None = Field(default=None, max_length=1000, description="Why, for the record.")


class ApprovalOut(BaseModel):
    approver_id: str = Field(description="Who decided.")
    decision: Annotated[str, one_of(("approve", "reject"))] = Field(description="`approve` or `reject`.")
    is_admin: bool = Field(description="Whether the approver acted as an admin.")
    note: str | None = Field(description="Why, for the record.")
    created_at: datetime = Field(description="When.")


class ReleaseItemOut(BaseModel):
    transaction_id: str = Field(description="The deposit it comes out of.")
    amount: Amount = Field(description="How much of that deposit it releases.")


class ReleaseOut(BaseModel):
    id: str
    app_id: str
    milestone_id: str = Field(description="The milestone the release is for.")
    transaction_id: str | None = Field(description="The one deposit it releases from; null for all the app's.")
    status: Annotated[str, one_of(ReleaseStatus)] = Field(
        description="`pending_approval`, then `approved` or `rejected`; `approved`, then `released` once "
        "executed.")
    amount: Amount = Field(description="The total it releases.")
    currency: CurrencyCode
    release_percentage: PercentageText = Field(description="The share of the deposits it releases.")
    required_approvals: int = Field(description="How many approvals it needs.")
    needs_admin_approval: bool = Field(
        description="Whether an admin must also approve it (at or above `ESCROW_RELEASE_THRESHOLD`).")
    approvals: list[ApprovalOut] = Field(description="The decisions so far.")
    items: list[ReleaseItemOut] = Field(description="What it takes from each deposit.")
    requested_by: str = Field(description="Who asked for it.")
    executed_at: datetime | None = Field(description="When the money moved; null before.")
    created_at: datetime


class RefundIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"amount": "5000.00", "reason": "Investor withdrew"}]})

    amount: AmountInput | None = Field(default=None,
        description="How much to refund (default: all that remains of the deposit).")
    reason: str = Field(default="", max_length=500, description="Why, for the record.")


class RefundOut(BaseModel):
    id: str = Field(description="The refund's id.")
    transaction_id: str | None = Field(description="The deposit it comes out of.")
    escrow_transaction_id: str | None = Field(description="The escrow refund row that records it.")
    payment_reference: str | None
    amount: Amount = Field(description="The amount refunded.")
    currency: CurrencyCode
    status: Annotated[str, one_of(("pending", "processed", "failed"))] = Field(
        description="`pending` until Paystack settles it, then `processed` or `failed`.")
    reason: str = Field(description="Why, for the record.")
    created_at: datetime


class DisputeIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "transaction_id": "esc_0123456789abcdef", "reason": "The app was not delivered as described",
        "amount": "1000.00",
    }]})

    transaction_id: str = Field(min_length=1, max_length=40, description="The deposit disputed.")
    reason: str = Field(min_length=1, max_length=1000, description="What is wrong, in words.")
    amount: AmountInput | None = Field(default=None,
        description="How much is disputed (default: all of the deposit that is free).")


class DisputeResolve(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "outcome": "partial_refund", "amount": "500.00", "note": "Half of the disputed amount goes back."}]})

    # `chargeback` (chargebacks only): the bank took `amount` (default: all that is disputed) back.
    outcome: DisputeOutcome = Field(
        description="`refund` the disputed money, `partial_refund` (with `amount`), `release` it to the owner, "
        "`dismiss` the dispute, or `chargeback` (chargebacks only: the bank took `amount`, default "
        "all that is disputed, back).")
    amount: AmountInput | None = Field(default=None, description="`partial_refund`, `chargeback`: how much.")
    note: str | None = Field(default=None, max_length=1000, description="Why, for the record.")


class DisputeOut(FromRow):
    id: str
    transaction_id: str = Field(description="The deposit disputed.")
    app_id: str
    investor_id: str
    amount: Money = Field(description="How much is disputed (frozen while open).")
    currency: CurrencyCode
    reason: str = Field(description="What is wrong, in words.")
    status: Annotated[str, one_of(DisputeStatus)] = Field(description="`open`, then `resolved` with an `outcome`.")
    source: Annotated[str, one_of(("investor", "gateway"))] = Field(
        description="`investor` (opened here) or `gateway` (a chargeback reported by Paystack).")
    outcome: Annotated[str, one_of(get_args(DisputeOutcome))] | None = Field(
        description="How it was resolved; null while open.")
    outcome_amount: OptionalMoney = Field(description="The amount the outcome moved.")
    resolution_note: str | None = Field(description="The resolver's note.")
    resolved_by: str | None = Field(description="Who resolved it.")
    resolved_at: datetime | None = Field(description="When it was resolved.")
    created_at: datetime
    # Chargebacks: Paystack's resolution, and why the money was left frozen for an admin.
    gateway_resolution: str | None = Field(description="Chargebacks: Paystack's resolution.")
    flagged: bool = Field(description="Whether its money was left frozen for an admin.")
    flag_reason: str | None = Field(description="Why it was flagged.")


class EscrowSummaryItem(BaseModel):
    currency: CurrencyCode
    deposited: Amount = Field(description="All deposited.")
    released: Amount = Field(description="All released to the owner.")
    refunded: Amount = Field(description="All refunded to investors.")
    held: Amount = Field(description="Still in escrow.")
    frozen: Amount = Field(description="Frozen by open disputes.")
    available: Amount = Field(description="Held and not frozen: what a release may take.")


class EscrowSummary(BaseModel):
    app_id: str
    items: list[EscrowSummaryItem] = Field(description="One entry per currency.")


class StatementLine(BaseModel):
    date: datetime = Field(description="When the movement happened.")
    type: Annotated[str, one_of(get_args(EscrowType))] = Field(description="`deposit`, `release` or `refund`.")
    id: str = Field(description="The escrow transaction's id.")
    investor_id: str
    amount: Amount = Field(description="The movement (positive for a deposit, negative otherwise).")
    balance: Amount = Field(description="The balance after it.")


class Statement(BaseModel):
    app_id: str
    currency: CurrencyCode
    from_date: date | None = Field(description="The first day covered; null from the start.")
    to_date: date | None = Field(description="The last day covered; null until now.")
    opening_balance: Amount = Field(description="The balance before `from_date`.")
    items: list[StatementLine] = Field(description="The movements, oldest first.")
    closing_balance: Amount = Field(description="The balance at the end.")


def _percentage_hundredths(value: object) -> int:
    try:
        return parse_percentage(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None
