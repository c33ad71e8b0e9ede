"""Shared request/response building blocks: strict bodies and cursor pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused (no mass assignment)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    limit: int
    cursor: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
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

