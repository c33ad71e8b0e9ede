"""Fetching one row by its primary key: absent is the contract's 404, and a caller about to change the
row locks it (`for_update`, a no-op on SQLite, whose writers are serialised anyway)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound

Row = TypeVar("Row")


async def get_or_404(
    session: AsyncSession, model: type[Row], row_id: Any, *, for_update: bool = False, what: str | None = None
) -> Row:
    """The row of `model` whose primary key is `row_id`, or NotFound naming it ("<What> not found",
    with `<what>_id` in the details)."""
    [key] = inspect(model).primary_key
    stmt = select(model).where(key == row_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        name = what or model.__name__.lower()
        raise NotFound(f"{name.capitalize()} not found", **{f"{name}_id": row_id})
    return row
