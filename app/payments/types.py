"""Payment types: the extension point of the payment pipeline.

Each type says how to price a request (`plan`) and what its successful charges
do (`fulfil`, called exactly once per charge, inside the transaction that marks
the payments successful; charges verified together come as one batch, in the
order they were verified). Investment registers here; share transfers and revenue
plug in the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.core.security import Principal
from app.models import Payment
from app.payments.schemas import PaymentCreate
from app.runtime import Runtime


@dataclass(frozen=True)
class PaymentPlan:
    amount: int  # minor units, computed by the server
    currency: str
    app_id: str
    shares: int | None = None
    share_transfer_id: str | None = None
    period: str | None = None


class PaymentTypeHandler(Protocol):
    name: str

    async def plan(
        self, session: AsyncSession, rt: Runtime, principal: Principal, request: PaymentCreate
    ) -> PaymentPlan: ...

    async def fulfil(self, session: AsyncSession, rt: Runtime, payments: Sequence[Payment]) -> None: ...


@dataclass(frozen=True)
class PaymentTypes:
    by_name: Mapping[str, PaymentTypeHandler]

    @classmethod
    def of(cls, *handlers: PaymentTypeHandler) -> PaymentTypes:
        return cls({handler.name: handler for handler in handlers})


def handler_for(rt: Runtime, payment_type: str) -> PaymentTypeHandler:
    offered = rt.extension(PaymentTypes).by_name
    handler = offered.get(payment_type)
    if handler is None:
        raise ValidationFailed(f"payment_type {payment_type!r} is not available", supported=sorted(offered))
    return handler
