"""The sandbox's bank list and its deterministic account-name resolution."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

NUBAN = re.compile(r"[0-9]{10}")
# Paystack's documented failing test account: it never resolves or validates, at any bank.
FAILING_ACCOUNT = "0000000000"

# Fixed so that listing banks gives the same answer on every run.
_LISTED_AT = "2016-07-14T10:04:29.000Z"


@dataclass(frozen=True)
class Bank:
    id: int
    name: str
    slug: str
    code: str
    currency: str
    country: str
    type: str

    def api_data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "slug": self.slug,
            "code": self.code,
            "longcode": "",
            "gateway": None,
            "pay_with_bank": False,
            "active": True,
            "is_deleted": False,
            "country": self.country,
            "currency": self.currency,
            "type": self.type,
            "createdAt": _LISTED_AT,
            "updatedAt": _LISTED_AT,
        }


BANKS: tuple[Bank, ...] = (
    Bank(1, "Access Bank", "access-bank", "044", "NGN", "Nigeria", "nuban"),
    Bank(7, "First Bank of Nigeria", "first-bank-of-nigeria", "011", "NGN", "Nigeria", "nuban"),
    Bank(9, "Guaranty Trust Bank", "guaranty-trust-bank", "058", "NGN", "Nigeria", "nuban"),
    Bank(18, "United Bank For Africa", "united-bank-for-africa", "033", "NGN", "Nigeria", "nuban"),
    Bank(21, "Zenith Bank", "zenith-bank", "057", "NGN", "Nigeria", "nuban"),
    Bank(29, "GCB Bank Limited", "gcb-bank-limited-gh", "040", "GHS", "Ghana", "ghipss"),
    Bank(28, "MTN Mobile Money", "mtn-gh", "MTN", "GHS", "Ghana", "mobile_money"),
    Bank(140, "Absa Bank Limited, South Africa", "absa-za", "632005", "ZAR", "South Africa", "basa"),
    Bank(302, "M-PESA", "mpesa", "MPESA", "KES", "Kenya", "mobile_money"),
)

_FIRST_NAMES = (
    "ADAEZE",
    "TUNDE",
    "CHIOMA",
    "EMEKA",
    "FUNMILAYO",
    "IBRAHIM",
    "NGOZI",
    "SEGUN",
    "AMINA",
    "KWAME",
)
_LAST_NAMES = (
    "OKAFOR",
    "ADEYEMI",
    "BELLO",
    "EZE",
    "MENSAH",
    "OKONKWO",
    "ABUBAKAR",
    "NWOSU",
    "OLAWALE",
    "DANJUMA",
)


def list_banks(currency: str, bank_type: str | None) -> list[Bank]:
    return [bank for bank in BANKS if bank.currency == currency and (bank_type is None or bank.type == bank_type)]


def find_bank(code: str, *, currency: str, bank_type: str) -> Bank | None:
    return next(
        (b for b in BANKS if b.code == code and b.currency == currency and b.type == bank_type),
        None,
    )


def resolve_account_name(account_number: str, bank_code: str) -> str | None:
    """Any NUBAN at a listed Nigerian bank resolves (but FAILING_ACCOUNT); the name depends only on the number."""
    if (
        account_number == FAILING_ACCOUNT
        or not NUBAN.fullmatch(account_number)
        or find_bank(bank_code, currency="NGN", bank_type="nuban") is None
    ):
        return None
    digest = int.from_bytes(hashlib.sha256(account_number.encode()).digest()[:8], "big")
    last = _LAST_NAMES[digest % len(_LAST_NAMES)]
    first = _FIRST_NAMES[(digest // len(_LAST_NAMES)) % len(_FIRST_NAMES)]
    return f"{last} {first}"
