"""Request and answer bodies of the app registry, with the rules an app's settings must keep (approvers,
required approvals, platform fee)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from app.core.money import AmountInput, MoneyError, parse_percentage
from app.core.schemas import FromRow, Money, Percentage, StrictModel

UserId = Annotated[str, Field(min_length=1, max_length=128)]


class AppUpsert(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    owner_id: UserId
    currency: str = Field(min_length=3, max_length=3)
    share_price: AmountInput
    total_shares: int = Field(gt=0, le=10**12)
    approvers: list[UserId] = Field(default_factory=list, max_length=50)
    required_approvals: int = Field(default=1, ge=1)
    lock_in_days: int = Field(default=0, ge=0, le=36500)
    platform_fee_percentage: str = "0"

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("approvers")
    @classmethod
    def _not_the_owner(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("owner_id") in value:
            raise ValueError("the owner cannot be an approver: nobody approves money going to themselves")
        return value

    @field_validator("platform_fee_percentage", mode="before")
    @classmethod
    def _fee(cls, value: object) -> str:
        try:
            hundredths = parse_percentage(value)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        if hundredths >= 100 * 100:
            raise ValueError("platform_fee_percentage must be below 100")
        return str(value)

    @model_validator(mode="after")
    def _quorum(self) -> AppUpsert:
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError("approvers must be distinct")
        if self.approvers and self.required_approvals > len(self.approvers):
            raise ValueError("required_approvals must be between 1 and the number of approvers")
        if not self.approvers and self.required_approvals != 1:
            raise ValueError("required_approvals needs that many approvers")
        return self


class AppOut(FromRow):
    id: str
    name: str
    owner_id: str
    currency: str
    share_price: Money
    total_shares: int
    shares_issued: int
    shares_available: int
    approvers: list[str]
    required_approvals: int
    lock_in_days: int
    platform_fee_percentage: Percentage = Field(validation_alias="platform_fee_hundredths")
    created_at: datetime
    updated_at: datetime
