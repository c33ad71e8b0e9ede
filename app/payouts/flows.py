"""Payout flows that own their transactions: registering a payout account (resolved and registered as a
transfer recipient at the gateway, outside any transaction, then written)."""

from __future__ import annotations

import time

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.apps.service import check_currency
from app.core.errors import CurrencyNotSupported, InvalidBankAccount
from app.core.money import CURRENCIES, MoneyError, currency
from app.core.security import Principal
from app.gateway.errors import GatewayRejected
from app.gateway.types import Bank
from app.models import Payout, PayoutAccount
from app.models.base import new_id, utcnow
from app.payouts.schemas import PayoutAccountIn
from app.payouts.service import (
    _OUR_OWN_REFUSALS,
    RECIPIENT_TYPES,
)
from app.runtime import Runtime


async def register_payout_account(rt: Runtime, principal: Principal, body: PayoutAccountIn) -> PayoutAccount:
    currency = check_currency(rt.settings, body.currency)
    # Gateway calls first, outside any transaction.
    try:
        resolved = await rt.gateway.resolve_account(account_number=body.account_number, bank_code=body.bank_code)
        recipient = await rt.gateway.create_transfer_recipient(
            name=body.account_name or resolved.account_name,
            account_number=body.account_number,
            bank_code=body.bank_code,
            currency=currency,
            type=RECIPIENT_TYPES.get(currency, "nuban"),
        )
    except GatewayRejected as error:
        if error.status_code in _OUR_OWN_REFUSALS:
            raise
        # Paystack refused the details themselves: the caller's to correct, not a gateway fault to retry.
        raise InvalidBankAccount("The gateway could not verify these bank details", **error.details()) from error
    now = utcnow()
    details = {
        "currency": currency,
        "bank_code": body.bank_code,
        "account_number_encrypted": rt.cipher.encrypt(body.account_number),
        "account_last4": body.account_number[-4:],
        "account_name": body.account_name or resolved.account_name,
        "recipient_code": recipient.recipient_code,
        "updated_at": now,
    }
    insert = pg_insert if rt.db.is_postgres else sqlite_insert
    async with rt.db.unit_of_work() as session:
        # One statement: a user's first registrations arriving together all land on the one row.
        account = (
            await session.scalars(
                insert(PayoutAccount)
                .values(id=new_id("pa"), user_id=principal.user_id, created_at=now, **details)
                .on_conflict_do_update(index_elements=["user_id"], set_=details)
                .returning(PayoutAccount),
                execution_options={"populate_existing": True},
            )
        ).one()
        # Money that waited for an account goes out now.
        await session.execute(
            update(Payout)
            .where(Payout.user_id == principal.user_id, Payout.status == "pending", Payout.currency == currency)
            .values(recipient_code=recipient.recipient_code, available_at=utcnow())
        )
    rt.notify_worker()
    return account


BANK_LIST_TTL_SECONDS = 3600.0


async def bank_list(rt: Runtime, currency_code: str, bank_type: str | None, *, refresh: bool = False) -> list[Bank]:
    """The gateway's banks and mobile-money operators for a currency (and type), read at most once an hour
    per process unless `refresh` asks again; CurrencyNotSupported for a currency the service does not know."""
    try:
        code = currency(currency_code).code
    except MoneyError:
        raise CurrencyNotSupported(f"Unknown currency {currency_code!r}", currency=currency_code,
                                   supported=sorted(CURRENCIES)) from None
    key = (code, bank_type)
    cached = rt.bank_lists.get(key)
    if cached is not None and not refresh and time.monotonic() - cached[0] < BANK_LIST_TTL_SECONDS:
        return cached[1]
    banks = await rt.gateway.list_banks(code, bank_type)
    rt.bank_lists[key] = (time.monotonic(), banks)
    return banks
