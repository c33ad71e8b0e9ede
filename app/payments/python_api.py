"""The platform's Python interface to payments, async: `PaymentService(runtime).create_payment(...)` and
`.verify_signature(...)`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.core.errors import ValidationFailed
from app.core.security import Principal
from app.gateway.signature import verify_signature
from app.payments.flows import create_payment
from app.payments.schemas import PaymentCreate, PaymentOut
from app.runtime import Runtime


class PaymentService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def create_payment(
        self,
        *,
        amount: Decimal | float | int | str,
        currency: str,
        metadata: dict[str, Any],
        email: str | None = None,
        channels: list[str] | None = None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        """Start a payment; `metadata` names `payment_type`, `app_id` and `user_id` (and may name `email`,
        `share_transfer_id`, `period`); the rest of it is kept as the payment's metadata.

        Returns the payment as a mapping (`payment_url`, `reference`, `status`, ...).
        """
        extra = dict(metadata)
        try:
            payment_type = extra.pop("payment_type")
            app_id = str(extra.pop("app_id"))
            user_id = str(extra.pop("user_id"))
        except KeyError as missing:
            raise ValidationFailed(f"metadata needs {missing.args[0]}") from None
        email = email or extra.pop("email", None)
        if not email:
            raise ValidationFailed("an email is required: Paystack sends the receipt there")
        request = PaymentCreate(
            payment_type=payment_type,
            app_id=app_id,
            email=email,
            currency=currency,
            amount=amount,
            share_transfer_id=extra.pop("share_transfer_id", None),
            period=extra.pop("period", None),
            channels=channels,
            callback_url=callback_url,
            metadata=extra,
        )
        payment = await create_payment(self.runtime, Principal(user_id=user_id), request)
        return PaymentOut.model_validate(payment).model_dump(mode="json")

    def verify_signature(self, body: bytes, signature: str | bytes | None) -> bool:
        return verify_signature(body, signature, self.runtime.settings.paystack_secret_key.get_secret_value())
