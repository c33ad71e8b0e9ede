from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.money import (
    MoneyError,
    allocate,
    check_payable,
    format_percentage,
    parse_percentage,
    percentage_of,
    to_major,
    to_minor,
)


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("1000.00", "NGN", 100_000),
        ("1000", "NGN", 100_000),
        ("0.1", "GHS", 10),
        (1000, "USD", 100_000),
        (1000.1, "NGN", 100_010),  # a JSON number that round-trips exactly
        (Decimal("12345678901234.56"), "NGN", 1_234_567_890_123_456),
        ("12345678901234.56", "KES", 1_234_567_890_123_456),  # a string keeps every digit
    ],
)
def test_exact_parsing(value: object, currency: str, minor: int) -> None:
    assert to_minor(value, currency) == minor


@pytest.mark.parametrize(
    "value",
    ["1.001", "-5", "abc", "1e3", "NaN", "Infinity", "", " ", "1,000.00", True, None, float("nan"),
     float("inf"), 1e20, 12345678901234567.89, [], "0x10", "1_000"],
)
def test_bad_amounts_are_refused(value: object) -> None:
    with pytest.raises(MoneyError):
        to_minor(value, "NGN")


@pytest.mark.parametrize("value", ["\uff11\uff10\uff10\uff10", "\u0661\u0660\u0660\u0660.\u0660\u0660",
                                   "1000.\u0660\u0660", "\u0967\u0966\u0966\u0966", "1\u00b2"])
def test_only_ascii_digits_make_an_amount(value: str) -> None:
    # fullwidth, Arabic-Indic and Devanagari digits match \d and Decimal() reads them: both were 1000.00
    with pytest.raises(MoneyError):
        to_minor(value, "NGN")


@pytest.mark.parametrize("value", ["\uff12\uff15", "\u0662\u0665.\u0665\u0660", "2\u0665"])
def test_only_ascii_digits_make_a_percentage(value: str) -> None:
    with pytest.raises(MoneyError):
        parse_percentage(value)


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(MoneyError):
        to_minor("1.00", "XYZ")


@pytest.mark.parametrize(("minor", "text"), [(0, "0.00"), (5, "0.05"), (100_010, "1000.10"), (-250, "-2.50")])
def test_formatting(minor: int, text: str) -> None:
    assert to_major(minor, "NGN") == text


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_is_identity(minor: int) -> None:
    assert to_minor(to_major(minor, "NGN"), "NGN") == minor


def test_paystack_minimums_and_our_maximum() -> None:
    check_payable(5_000, "NGN", Decimal("10000000"))
    with pytest.raises(MoneyError, match="minimum"):
        check_payable(4_999, "NGN", Decimal("10000000"))
    check_payable(10, "GHS", Decimal("10000000"))
    with pytest.raises(MoneyError, match="maximum"):
        check_payable(1_000_000_001, "NGN", Decimal("10000000"))
    with pytest.raises(MoneyError):
        check_payable(0, "USD", Decimal("10000000"))


weights_strategy = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=60).filter(
    lambda ws: sum(ws) > 0
)


@given(total=st.integers(min_value=0, max_value=10**14), weights=weights_strategy)
def test_allocation_is_exact_fair_and_deterministic(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert abs(part - exact) < 1
        assert part >= 0
        if weight == 0:
            assert part == 0
    assert allocate(total, weights) == parts


def test_allocation_ties_go_to_the_earlier_index() -> None:
    assert allocate(1, [1, 1, 1]) == [1, 0, 0]
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]


def test_allocation_over_nothing() -> None:
    assert allocate(0, [0, 0]) == [0, 0]
    with pytest.raises(ValueError):
        allocate(5, [0, 0])


@pytest.mark.parametrize(("text", "hundredths"), [("25", 2500), ("25.5", 2550), ("0.01", 1), ("100.00", 10000)])
def test_percentages(text: str, hundredths: int) -> None:
    assert parse_percentage(text) == hundredths
    assert parse_percentage(format_percentage(hundredths)) == hundredths


@pytest.mark.parametrize("text", ["25.001", "-1", "abc", "1000", "1e2"])
def test_bad_percentages(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_percentage(text)


def test_percentage_of_rounds_half_up() -> None:
    assert percentage_of(100_000, 2500) == 25_000
    assert percentage_of(3, 5000) == 2  # 1.5 -> 2
    assert percentage_of(1, 3333) == 0
