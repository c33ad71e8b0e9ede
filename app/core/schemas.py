"""Shared request/response building blocks: strict bodies, answers read from rows, and cursor pages."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.money import CURRENCIES, PERCENT_PATTERN, format_percentage, to_major

T = TypeVar("T")


@dataclass(frozen=True)
class _InMinorUnits:
    """On a `FromRow` field: the row holds minor units of its `currency`; the answer shows major units."""


@dataclass(frozen=True)
class _InHundredths:
    """On a `FromRow` field: the row holds hundredths of a percent; the answer shows "25.00"."""


# How the schema shows the values the API writes as text; validation is the fields' own (these only document).
AMOUNT_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
# An amount in an answer: a decimal string in major units of the `currency` beside it ("5000.00").
Amount = Annotated[str, WithJsonSchema({
    "type": "string", "pattern": AMOUNT_PATTERN, "examples": ["5000.00"],
    "description": "A decimal string in major units of the currency beside it.",
})]
# The one way the API shows an amount read from a row: a decimal string in the row's currency ("5000.00").
Money = Annotated[Amount, _InMinorUnits()]
OptionalMoney = Annotated[Amount | None, _InMinorUnits()]
# A percentage in an answer, with two places ("25.00").
PercentageText = Annotated[str, WithJsonSchema({
    "type": "string", "pattern": r"^[0-9]{1,3}\.[0-9]{2}$", "examples": ["25.00"],
    "description": "A percentage with two decimal places.",
})]
Percentage = Annotated[PercentageText, _InHundredths()]
# A percentage in a request: a decimal string with at most two places ("25", "2.50").
PercentageInput = Annotated[str, WithJsonSchema({
    "type": "string", "pattern": PERCENT_PATTERN, "examples": ["25.00"],
    "description": "A decimal string with at most two places; JSON numbers are accepted when they convert exactly.",
})]
# A month, YYYY-MM.
Period = Annotated[str, WithJsonSchema({"type": "string", "pattern": PERIOD_PATTERN, "examples": ["2026-05"],
                                        "description": "A month, YYYY-MM."})]
# app/openapi.py makes it one `Currency` schema that every currency field refers to.
CURRENCY_SCHEMA = {"type": "string", "enum": list(CURRENCIES), "examples": ["NGN"],
                   "description": "An ISO 4217 currency code the service supports."}
# A currency in a request (three letters, upper-cased by the service; CURRENCY_NOT_SUPPORTED when it is not one
# the service, the app or the transfer takes) and in an answer.
CurrencyInput = Annotated[str, Field(min_length=3, max_length=3), WithJsonSchema(CURRENCY_SCHEMA)]
CurrencyCode = Annotated[str, WithJsonSchema(CURRENCY_SCHEMA)]


# The input rules shared by request bodies, as pydantic field validators (`field_validator("x")(check_x)`).
_PERIOD = re.compile(PERIOD_PATTERN)  # ASCII digits: `\d` takes any script's
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")
_HTTP_URL = re.compile(r"^https?://[^\s]+$")


def check_period(value: str | None) -> str | None:
    if value is not None and not _PERIOD.fullmatch(value):
        raise ValueError("period must be YYYY-MM")
    return value


def check_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.fullmatch(value):
        raise ValueError("not a valid email address")
    return value


def check_callback_url(value: str | None) -> str | None:
    if value is not None and not _HTTP_URL.fullmatch(value):
        raise ValueError("callback_url must be an http(s) URL")
    return value


def upper_code(value: str) -> str:
    """A currency code as the service writes it."""
    return value.upper()


def one_of(values: Iterable[str]) -> WithJsonSchema:
    """A string field's values as an enum in the schema (a status read from a row: the answer stays a str)."""
    return WithJsonSchema({"type": "string", "enum": [str(value) for value in values]})


class _RowShown:
    """A row as its answer reads it: amounts in major units, percentages formatted, the rest as stored."""

    def __init__(self, row: object, money: frozenset[str], percentages: frozenset[str]) -> None:
        self._row, self._money, self._percentages = row, money, percentages

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._row, name)
        if value is None:
            return None
        if name in self._money:
            return to_major(value, self._row.currency)  # type: ignore[attr-defined]
        if name in self._percentages:
            return format_percentage(value)
        return value


class FromRow(BaseModel):
    """An answer read from an ORM row (`from_attributes`): fields take the row's attribute of the same name
    (or their `validation_alias`); `Money` and `Percentage` fields are converted on the way."""

    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def _shown(cls, data: Any) -> Any:
        if isinstance(data, dict | BaseModel):
            return data
        return _RowShown(data, *_converted_attributes(cls))


@functools.cache  # per answer class, not per row: list pages convert many rows
def _converted_attributes(answer: type[FromRow]) -> tuple[frozenset[str], frozenset[str]]:
    """The row attributes `answer` reads as money, and those it reads as percentages."""
    money: set[str] = set()
    percentages: set[str] = set()
    for name, field in answer.model_fields.items():
        source = field.validation_alias if isinstance(field.validation_alias, str) else name
        if any(isinstance(marker, _InMinorUnits) for marker in field.metadata):
            money.add(source)
        elif any(isinstance(marker, _InHundredths) for marker in field.metadata):
            percentages.add(source)
    return frozenset(money), frozenset(percentages)


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused (no mass assignment)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


NEXT_CURSOR = "The `cursor` that reads the next page; null on the last page."


class Page(BaseModel, Generic[T]):
    items: list[T] = Field(description="This page's items, newest first.")
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR)


class PageParams(BaseModel):
    limit: int
    cursor: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 50,
    cursor: Annotated[str | None, Query(max_length=100, description="The previous page's `next_cursor`.")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def where_given(stmt: Select[Any], filters: dict[InstrumentedAttribute[Any], Any]) -> Select[Any]:
    """List filters: each column equal to its value, for the values the caller gave (not None or "")."""
    for column, value in filters.items():
        if value is not None and value != "":
            stmt = stmt.where(column == value)
    return stmt


async def fetch_page(
    session: AsyncSession, stmt: Select[Any], id_column: InstrumentedAttribute[Any], params: PageParams
) -> tuple[Sequence[Any], str | None]:
    """Newest first by id (ids are time-ordered); the cursor is the last id returned."""
    if params.cursor:
        stmt = stmt.where(id_column < params.cursor)
    rows = (await session.scalars(stmt.order_by(id_column.desc()).limit(params.limit + 1))).all()
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        return rows, str(getattr(rows[-1], id_column.key))
    return rows, None

