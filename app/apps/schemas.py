"""Request and answer bodies of the app registry, with the rules an app's settings must keep (approvers,
required approvals, platform fee)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.core.money import AmountInput, MoneyError, parse_percentage
from app.core.schemas import (
    CurrencyCode,
    CurrencyInput,
    FromRow,
    Money,
    Percentage,
    PercentageInput,
    StrictModel,
)

UserId = Annotated[str, Field(min_length=1, max_length=128)]


class AppUpsert(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Acme Robotics", "owner_id": "owner-1", "currency": "NGN", "share_price": "1000.00",
        "total_shares": 10000, "approvers": ["approver-1"], "required_approvals": 1, "lock_in_days": 30,
        "platform_fee_percentage": "2.50",
    }]})

    name: str = Field(min_length=1, max_length=200, description="The app's name.")
    owner_id: UserId = Field(description="The user id of the app's owner, who receives its released escrow.")
    currency: CurrencyInput = Field(description="The currency its shares are sold in; fixed once shares are issued.")
    share_price: AmountInput = Field(description="The price of one share; fixed once shares are issued.")
    total_shares: int = Field(gt=0, le=10**12, description="How many shares the app has in all.")
    approvers: list[UserId] = Field(default_factory=list, max_length=50,
        description="The user ids who approve its escrow releases (never the owner).")
    required_approvals: int = Field(default=1, ge=1,
        description="How many approvers must approve a release (1 to the number of approvers).")
    lock_in_days: int = Field(default=0, ge=0, le=36500,
        description="Days after buying before an investor may offer shares to someone else.")
    platform_fee_percentage: PercentageInput = Field(default="0",
        description="The platform's cut of each revenue distribution, below 100.")

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
    name: str = Field(description="The app's name.")
    owner_id: str
    currency: CurrencyCode
    share_price: Money = Field(description="The price of one share.")
    total_shares: int = Field(description="How many shares the app has in all.")
    shares_issued: int = Field(description="Shares sold to investors so far.")
    shares_available: int = Field(description="Shares still for sale (`total_shares` - `shares_issued`).")
    approvers: list[str] = Field(description="The user ids who approve its escrow releases.")
    required_approvals: int = Field(description="How many approvers must approve a release.")
    lock_in_days: int = Field(description="Days after buying before an investor may offer shares to someone else.")
    platform_fee_percentage: Percentage = Field(validation_alias="platform_fee_hundredths",
        description="The platform's cut of each revenue distribution.")
    created_at: datetime
    updated_at: datetime
