"""The one place for money: currencies, exact parsing, formatting, allocation.

Amounts live as integers in the currency's minor unit. The API speaks decimal
strings in major units; JSON numbers are accepted but must convert exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError


@dataclass(frozen=True)
class Currency:
    code: str
    exponent: int
    minimum_minor: int  # Paystack's smallest charge

    @property
    def factor(self) -> int:
        return 10**self.exponent


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("NGN", 2, 5_000),
        Currency("GHS", 2, 10),
        Currency("ZAR", 2, 100),
        Currency("KES", 2, 300),
        Currency("USD", 2, 200),
    )
}

# ASCII digits only: `\d` and `Decimal()` also take other scripts' digits (fullwidth, Arabic-Indic, ...).
DECIMAL_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,6})?$"
PERCENT_PATTERN = r"^[0-9]{1,3}(\.[0-9]{1,2})?$"
_DECIMAL_TEXT = re.compile(DECIMAL_PATTERN)  # used with fullmatch: a trailing newline does not pass
_PERCENT_TEXT = re.compile(PERCENT_PATTERN)
MAX_DIGITS = 15  # a float with at most 15 significant digits round-trips exactly


class MoneyError(ValueError):
    """Not a valid amount; rendered as INVALID_AMOUNT."""


def currency(code: str) -> Currency:
    try:
        return CURRENCIES[code.upper()]
    except KeyError:
        raise MoneyError(f"unknown currency {code!r}") from None


def to_decimal(value: Any) -> Decimal:
    """A positive-or-zero decimal from a string, int or exact JSON number; no floats, NaN or exponents."""
    if isinstance(value, bool):
        raise MoneyError("amount must be a decimal string")
    if isinstance(value, int):
        if value < 0:
            raise MoneyError("amount must be positive")
        return Decimal(value)
    if isinstance(value, float):
        # A JSON number already went through a float: accept it only if its shortest
        # representation is short enough to be exactly what the client wrote.
        text = repr(value)
        if "e" in text or "inf" in text or "nan" in text:
            raise MoneyError("send amounts as decimal strings")
        if len(text.replace(".", "").replace("-", "").lstrip("0")) > MAX_DIGITS:
            raise MoneyError("amount has too many digits for a JSON number; send it as a string")
        value = text
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError("amount must be finite")
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            raise MoneyError("amounts are plain decimals, without exponents")
        value = format(value, "f")
    if not isinstance(value, str):
        raise MoneyError("amount must be a decimal string")
    text = value.strip()
    if text.startswith("-"):
        raise MoneyError("amount must be positive")
    if not _DECIMAL_TEXT.fullmatch(text):
        raise MoneyError("amount must be a plain decimal like \"1000.00\"")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex already excludes these
        raise MoneyError("amount is not a number") from None


def to_minor(value: Any, currency_code: str) -> int:
    """Exact major-unit amount -> integer minor units, refusing more decimals than the currency has."""
    cur = currency(currency_code)
    amount = to_decimal(value)
    minor = amount * cur.factor
    if minor != minor.to_integral_value():
        raise MoneyError(f"{cur.code} amounts have at most {cur.exponent} decimal places")
    return int(minor)


def to_major(minor: int, currency_code: str) -> str:
    """Integer minor units -> decimal string with exactly the currency's places."""
    cur = currency(currency_code)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), cur.factor)
    if cur.exponent == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{cur.exponent}d}"


def check_payable(minor: int, currency_code: str, maximum_major: Decimal) -> None:
    """A charge Paystack will take and we allow: positive, at least its minimum, at most our maximum."""
    cur = currency(currency_code)
    if minor <= 0:
        raise MoneyError("amount must be greater than zero")
    if minor < cur.minimum_minor:
        raise MoneyError(f"the minimum {cur.code} amount is {to_major(cur.minimum_minor, cur.code)}")
    if minor > int(maximum_major * cur.factor):
        raise MoneyError(f"the maximum amount is {maximum_major:.2f} {cur.code}")


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` minor units by integer weights with the largest-remainder method.

    Parts sum to `total`, each is within one unit of its exact share, zero weights
    get zero, and ties go to the earlier index, so the result is deterministic.
    """
    if total < 0:
        raise ValueError("total must not be negative")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total:
            raise ValueError("cannot allocate a non-zero total over zero weights")
        return [0] * len(weights)
    parts = []
    negated_remainders = []
    for weight in weights:
        part, remainder = divmod(total * weight, weight_sum)
        parts.append(part)
        negated_remainders.append(-remainder)
    left = total - sum(parts)
    # Largest remainder first; the sort is stable, so equal remainders keep index order. Sorting the
    # indexes by a list's own lookup halves the time of sorting (remainder, index) pairs.
    for index in sorted(range(len(parts)), key=negated_remainders.__getitem__)[:left]:
        parts[index] += 1
    return parts


def share_rounded_down(total: int, part: int, whole: int) -> int:
    """`total` x `part` / `whole` in minor units, rounded down (what is owed on `part` of `whole` shares:
    never more than the exact share)."""
    if total < 0 or part < 0 or whole <= 0 or part > whole:
        raise ValueError("need 0 <= part <= whole, whole > 0 and a total not below zero")
    return total * part // whole


# Percentages are held as integer hundredths ("25.00" -> 2500) so they stay exact.
PERCENT_SCALE = 100
FULL_PERCENT = 100 * PERCENT_SCALE


def parse_percentage(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise MoneyError("percentage must be a decimal string")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, Decimal | int):
        value = format(Decimal(value), "f")
    if not isinstance(value, str) or not _PERCENT_TEXT.fullmatch(value.strip()):
        raise MoneyError("percentage must be a decimal with at most two places, like \"25.00\"")
    return int(Decimal(value.strip()) * PERCENT_SCALE)


def format_percentage(hundredths: int) -> str:
    return f"{hundredths // PERCENT_SCALE}.{hundredths % PERCENT_SCALE:02d}"


def percentage_of(amount_minor: int, hundredths: int) -> int:
    """`hundredths`/10000 of an amount, rounded half up to a minor unit."""
    return (amount_minor * hundredths * 2 + FULL_PERCENT) // (2 * FULL_PERCENT)


def _amount_input(value: Any) -> Decimal:
    try:
        return to_decimal(value)
    except MoneyError as exc:
        raise PydanticCustomError("invalid_amount", str(exc)) from None


# A request field holding a major-unit amount: validated as exact decimal, still
# needing its currency to become minor units (services call `to_minor`).
AmountInput = Annotated[
    Decimal,
    BeforeValidator(_amount_input),
    PlainSerializer(lambda d: format(d, "f"), return_type=str),
    # Shown as what clients should send; JSON numbers that convert exactly are still accepted.
    WithJsonSchema({
        "type": "string", "pattern": DECIMAL_PATTERN, "examples": ["1000.00"],
        "description": "A decimal string in major units of the currency, at most as many places as it has "
                       "(JSON numbers are accepted when they convert exactly; INVALID_AMOUNT otherwise).",
    }),
]
