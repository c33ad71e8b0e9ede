"""Ledger account names: what an account holds is in its name."""

from __future__ import annotations

GUARDED_PREFIXES = ("escrow:", "payable:", "revenue:", "payout:in_flight:", "refund:in_flight:", "platform:")


def gateway(currency: str) -> str:
    return f"gateway:paystack:{currency}"


ESCROW_PREFIX = "escrow:app:"


def escrow(app_id: str, currency: str) -> str:
    return f"{ESCROW_PREFIX}{app_id}:{currency}"


def payable(user_id: str, currency: str) -> str:
    return f"payable:user:{user_id}:{currency}"


def payout_in_flight(currency: str) -> str:
    return f"payout:in_flight:{currency}"


def refund_in_flight(currency: str) -> str:
    return f"refund:in_flight:{currency}"


def revenue(app_id: str, currency: str) -> str:
    return f"revenue:app:{app_id}:{currency}"


def platform_fees(currency: str) -> str:
    return f"platform:fees:{currency}"


def is_guarded(name: str) -> bool:
    """Guarded accounts hold money someone is owed: they never go below zero."""
    return name.startswith(GUARDED_PREFIXES)


def currency_of(name: str) -> str:
    return name.rsplit(":", 1)[1]
