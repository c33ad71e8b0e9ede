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
    Bank(229, "GCB Bank Limited", "gcb-bank-limited-gh", "040", "GHS", "Ghana", "ghipss"),
    Bank(230, "Ecobank Ghana", "ecobank-ghana", "130", "GHS", "Ghana", "ghipss"),
    # Ghana's mobile-money operators, as Paystack lists them (GET /bank?currency=GHS&type=mobile_money).
    Bank(28, "MTN", "mtn-mobile-money", "MTN", "GHS", "Ghana", "mobile_money"),
    Bank(66, "Vodafone", "vod-mobile-money", "VOD", "GHS", "Ghana", "mobile_money"),
    Bank(29, "AirtelTigo", "atl-mobile-money", "ATL", "GHS", "Ghana", "mobile_money"),
    Bank(140, "Absa Bank Limited, South Africa", "absa-za", "632005", "ZAR", "South Africa", "basa"),
    Bank(141, "First National Bank", "first-national-bank-za", "250655", "ZAR", "South Africa", "basa"),
    Bank(142, "Standard Bank", "standard-bank-za", "051001", "ZAR", "South Africa", "basa"),
    Bank(310, "Kenya Commercial Bank", "kcb-ke", "01", "KES", "Kenya", "kepss"),
    Bank(311, "Equity Bank", "equity-bank-ke", "68", "KES", "Kenya", "kepss"),
    Bank(302, "M-PESA", "mpesa", "MPESA", "KES", "Kenya", "mobile_money"),
    Bank(303, "M-PESA Till", "mpesa-till", "MPTILL", "KES", "Kenya", "mobile_money_business"),
    Bank(304, "M-PESA Paybill", "mpesa-paybill", "MPPAYBILL", "KES", "Kenya", "mobile_money_business"),
)
# The currencies whose accounts Paystack resolves by number (GET /bank/resolve): Nigeria and Ghana.
RESOLVING_CURRENCIES = frozenset({"NGN", "GHS"})
# South Africa verifies with POST /bank/validate instead.
VALIDATING_COUNTRIES = {"ZA": "ZAR"}
DOCUMENT_TYPES = ("identityNumber", "passportNumber", "businessRegistrationNumber")
ACCOUNT_TYPES = ("personal", "business")
# What each document number looks like: a South African ID number is 13 digits, a company registration
# number YYYY/NNNNNN/NN; a passport number is letters and digits.
_DOCUMENT_NUMBERS = {
    "identityNumber": re.compile(r"[0-9]{13}"),
    "passportNumber": re.compile(r"[A-Za-z0-9]{6,20}"),
    "businessRegistrationNumber": re.compile(r"[0-9]{4}/[0-9]{6}/[0-9]{2}"),
}

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


def stable_name(account_number: str) -> str:
    """The holder's name the sandbox gives an account: it depends only on the number."""
    digest = int.from_bytes(hashlib.sha256(account_number.encode()).digest()[:8], "big")
    last = _LAST_NAMES[digest % len(_LAST_NAMES)]
    first = _FIRST_NAMES[(digest // len(_LAST_NAMES)) % len(_FIRST_NAMES)]
    return f"{last} {first}"


def resolving_bank(bank_code: str) -> Bank | None:
    """The listed bank or operator of a currency whose accounts resolve by number."""
    return next((b for b in BANKS if b.code == bank_code and b.currency in RESOLVING_CURRENCIES), None)


def resolve_account_name(account_number: str, bank_code: str) -> str | None:
    """Any 10-digit number at a listed Nigerian or Ghanaian bank or operator resolves (but FAILING_ACCOUNT)."""
    if account_number == FAILING_ACCOUNT or not NUBAN.fullmatch(account_number) or resolving_bank(bank_code) is None:
        return None
    return stable_name(account_number)


def validation_failure(body_account_number: str, account_type: str, document_type: str,
                       document_number: str | None) -> str | None:
    """Why a South African account does not validate, or None when it does: any 10-digit number (but
    FAILING_ACCOUNT) at a listed bank, with a document of the right shape for the kind of account."""
    if body_account_number == FAILING_ACCOUNT or not NUBAN.fullmatch(body_account_number):
        return "Account number could not be verified"
    business = account_type == "business"
    if business != (document_type == "businessRegistrationNumber"):
        return "The document type does not match the account type"
    if document_number is None or not _DOCUMENT_NUMBERS[document_type].fullmatch(document_number):
        return "The document number does not match the account holder"
    return None
