from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

EscrowType = Literal["deposit", "release", "refund"]


class EscrowTransactionOut(BaseModel):
    id: str
    type: str
    app_id: str
    investor_id: str
    amount: str
    currency: str
    status: str
    payment_gateway: str
    gateway_reference: str | None
    shares: int | None
    released: str | None
    refunded: str | None
    frozen: str | None
    remaining: str | None
    deposit_id: str | None
    milestone_id: str | None
    created_at: datetime


class EscrowTransactionPage(BaseModel):
    items: list[EscrowTransactionOut]
    next_cursor: str | None
