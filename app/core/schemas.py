"""Shared request/response building blocks: strict bodies, answers read from rows, and cursor pages."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.fields import FieldInfo
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


@dataclass(frozen=True)
class _Reading:
    """What an answer class reads from a row: its fields' source attributes, and which are converted."""

    sources: tuple[str, ...]
    money: frozenset[str]
    percentages: frozenset[str]


_ABSENT = object()


def _row_shown(row: object, reading: _Reading) -> dict[str, Any]:
    """A row as its answer reads it: amounts in major units, percentages formatted, the rest as stored. A dict
    rather than an object pydantic asks for each field in turn: a payment's answer took about 40% less CPU so
    (docs/performance.md). An attribute the row does not have is left out, as pydantic would leave it."""
    shown: dict[str, Any] = {}
    for source in reading.sources:
        value = getattr(row, source, _ABSENT)
        if value is _ABSENT:
            continue
        if value is not None:
            if source in reading.money:
                value = to_major(value, row.currency)  # type: ignore[attr-defined]
            elif source in reading.percentages:
                value = format_percentage(value)
        shown[source] = value
    return shown


class FromRow(BaseModel):
    """An answer read from an ORM row (`from_attributes`): fields take the row's attribute of the same name
    (or their `validation_alias`); `Money` and `Percentage` fields are converted on the way."""

    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def _shown(cls, data: Any) -> Any:
        if isinstance(data, dict | BaseModel):
            return data
        return _row_shown(data, _reading(cls))


def _attributes_read(answer: type[FromRow], name: str, field: FieldInfo) -> list[str]:
    """The row attributes a field reads: its name, its alias, or each of its AliasChoices (pydantic takes the
    first the row has)."""
    alias = field.validation_alias
    if alias is None or isinstance(alias, str):
        return [alias or name]
    if isinstance(alias, AliasChoices) and all(isinstance(choice, str) for choice in alias.choices):
        return [str(choice) for choice in alias.choices]
    raise TypeError(f"{answer.__name__}.{name}: a FromRow field reads attributes, not paths")


@functools.cache  # per answer class, not per row: list pages convert many rows
def _reading(answer: type[FromRow]) -> _Reading:
    """The row attributes `answer` reads, those it reads as money, and those it reads as percentages."""
    sources: list[str] = []
    money: set[str] = set()
    percentages: set[str] = set()
    for name, field in answer.model_fields.items():
        for source in _attributes_read(answer, name, field):
            if source not in sources:
                sources.append(source)
            if any(isinstance(marker, _InMinorUnits) for marker in field.metadata):
                money.add(source)
            elif any(isinstance(marker, _InHundredths) for marker in field.metadata):
                percentages.add(source)
    return _Reading(tuple(sources), frozenset(money), frozenset(percentages))


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

