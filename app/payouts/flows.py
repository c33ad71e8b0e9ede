"""Payout flows that own their transactions: registering a payout account (verified the way Paystack verifies
that country and registered as a transfer recipient at the gateway, outside any transaction, then written)."""

from __future__ import annotations

import time

from app.apps.service import check_currency
from app.core.errors import CurrencyNotSupported, InvalidBankAccount, ValidationFailed
from app.core.money import CURRENCIES, MoneyError, currency
from app.core.security import Principal
from app.gateway.errors import GatewayRejected
from app.gateway.types import Bank
from app.models import PayoutAccount
from app.payouts import service
from app.payouts.schemas import PayoutAccountIn
from app.payouts.service import DEFAULT_TYPES, TYPE_CURRENCIES
from app.runtime import Runtime

# Recipient types whose accounts Paystack resolves by number (GET /bank/resolve: Nigeria and Ghana's banks).
_RESOLVED_TYPES = frozenset({"nuban", "ghipss"})
# South Africa validates the holder and their document instead (POST /bank/validate).
_VALIDATED_TYPES = frozenset({"basa"})
_COUNTRY_OF_CURRENCY = {"ZAR": "ZA"}
# An M-PESA paybill is paid with an account reference too, which a payout account does not carry.
_UNSUPPORTED_BANK_CODES = frozenset({"MPPAYBILL"})


def _recipient_type(currency_code: str, body: PayoutAccountIn) -> str:
    """The recipient type the request asks for, checked against its currency."""
    if not any(currency_code in currencies for currencies in TYPE_CURRENCIES.values()):
        supported = sorted(set().union(*TYPE_CURRENCIES.values()))
        raise CurrencyNotSupported(f"Paystack does not pay out in {currency_code} for this integration; money "
                                   "owed in it stays payable", currency=currency_code, supported=supported)
    kind = body.type or DEFAULT_TYPES[currency_code]
    if currency_code not in TYPE_CURRENCIES[kind]:
        raise ValidationFailed(f"A {kind} account cannot hold {currency_code}", type=kind, currency=currency_code,
                               types=sorted(t for t, c in TYPE_CURRENCIES.items() if currency_code in c))
    if body.bank_code.upper() in _UNSUPPORTED_BANK_CODES:
        raise ValidationFailed("M-PESA paybills are not supported: pay to an M-PESA till or phone number",
                               bank_code=body.bank_code)
    south_african = (body.account_type, body.document_type, body.document_number)
    if kind in _VALIDATED_TYPES:
        if None in south_african or not body.account_name:
            raise ValidationFailed("A South African account needs account_name, account_type, document_type "
                                   "and document_number")
    elif any(field is not None for field in south_african):
        raise ValidationFailed("account_type, document_type and document_number are for South African accounts")
    if kind not in _RESOLVED_TYPES | _VALIDATED_TYPES and not body.account_name:
        # Paystack has no way to tell the holder's name for these: the caller says it.
        raise ValidationFailed(f"account_name is required for {kind} accounts", type=kind)
    return kind


async def register_payout_account(
    rt: Runtime, principal: Principal, body: PayoutAccountIn, *, as_default: bool
) -> tuple[PayoutAccount, bool]:
    """Verify and register the account; returns it and whether it is new. `as_default`: it becomes the
    default of its currency (PUT /me); otherwise only the first account of a currency does."""
    currency_code = check_currency(rt.settings, body.currency)
    kind = _recipient_type(currency_code, body)
    name = body.account_name
    # Gateway calls first, outside any transaction.
    try:
        if kind in _RESOLVED_TYPES:
            resolved = await rt.gateway.resolve_account(account_number=body.account_number, bank_code=body.bank_code)
            name = name or resolved.account_name
        elif kind in _VALIDATED_TYPES:
            assert body.account_name and body.account_type and body.document_type and body.document_number
            validation = await rt.gateway.validate_account(
                bank_code=body.bank_code, country_code=_COUNTRY_OF_CURRENCY[currency_code],
                account_number=body.account_number, account_name=body.account_name,
                account_type=body.account_type, document_type=body.document_type,
                document_number=body.document_number,
            )
            if not validation.verified:
                raise InvalidBankAccount("The gateway could not validate these bank details",
                                         gateway_message=validation.message or "Account could not be verified")
        assert name
        recipient = await rt.gateway.create_transfer_recipient(
            name=name, account_number=body.account_number, bank_code=body.bank_code, currency=currency_code,
            type=kind,
        )
    except GatewayRejected as error:
        if error.refuses_our_credentials:
            raise
        # Paystack refused the details themselves: the caller's to correct, not a gateway fault to retry.
        raise InvalidBankAccount("The gateway could not verify these bank details", **error.details()) from error
    details = {
        "currency": currency_code,
        "type": kind,
        "bank_code": body.bank_code,
        "account_number_encrypted": rt.cipher.encrypt(body.account_number),
        "account_last4": body.account_number[-4:],
        "account_name": name,
        "recipient_code": recipient.recipient_code,
        "account_type": body.account_type,
        "document_type": body.document_type,
        "document_number_encrypted": rt.cipher.encrypt(body.document_number) if body.document_number else None,
    }
    async with rt.db.unit_of_work() as session:
        account, created = await service.save_payout_account(session, principal.user_id, details)
        if as_default and not account.is_default:
            account = await service.make_default(session, account)
    # Money that waited for an account goes out now.
    rt.notify_worker()
    return account, created


async def set_default_account(rt: Runtime, principal: Principal, account_id: str) -> PayoutAccount:
    async with rt.db.unit_of_work() as session:
        account = await service.own_payout_account(session, principal, account_id)
        account = await service.make_default(session, account)
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
