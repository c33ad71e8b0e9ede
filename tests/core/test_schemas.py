"""Answers read from rows (`FromRow`): what a client sees of a row's money, percentages, aliases and gaps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import AliasChoices, AliasPath, Field

from app.core.schemas import FromRow, Money, OptionalMoney, Percentage


@dataclass
class Row:
    currency: str
    amount: int
    fee: int | None
    share: int
    account_last4: str


class Answer(FromRow):
    currency: str
    amount: Money
    fee: OptionalMoney
    share: Percentage
    last4: str = Field(validation_alias=AliasChoices("last4", "account_last4"))
    note: str = "none"


def test_a_row_is_shown_in_major_units_and_formatted_percentages_with_its_aliases_and_defaults() -> None:
    answer = Answer.model_validate(Row(currency="NGN", amount=500_050, fee=None, share=2_500, account_last4="1234"))

    assert answer.model_dump(mode="json") == {
        "currency": "NGN", "amount": "5000.50", "fee": None, "share": "25.00", "last4": "1234", "note": "none",
    }


def test_the_first_alias_choice_the_row_has_wins() -> None:
    @dataclass
    class Both(Row):
        last4: str = "9999"

    answer = Answer.model_validate(Both(currency="GHS", amount=700, fee=15, share=10_000, account_last4="1234"))

    assert (answer.last4, answer.amount, answer.fee, answer.share) == ("9999", "7.00", "0.15", "100.00")


def test_an_answer_reading_a_path_is_refused_when_it_reads_a_row() -> None:
    class Nested(FromRow):
        last4: str = Field(validation_alias=AliasPath("account", "last4"))

    with pytest.raises(TypeError, match="attributes, not paths"):
        Nested.model_validate(Row(currency="NGN", amount=1, fee=None, share=0, account_last4="1234"))
