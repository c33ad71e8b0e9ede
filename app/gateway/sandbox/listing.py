"""List endpoints of the sandbox: Paystack's filters (`from`, `to`, `status`) and offset pages
(`page`, `perPage`), with the `meta` Paystack answers them with."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from app.gateway.sandbox.envelope import invalid
from app.gateway.sandbox.fields import DIGITS

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000

Record = TypeVar("Record")


@dataclass(frozen=True)
class ListQuery:
    page: int
    per_page: int
    start: datetime | None
    end: datetime | None
    status: str | None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ListQuery:
        return cls(
            page=_positive(params.get("page"), "page", 1),
            per_page=min(_positive(params.get("perPage"), "perPage", DEFAULT_PER_PAGE), MAX_PER_PAGE),
            start=_moment(params.get("from"), "from"),
            end=_moment(params.get("to"), "to"),
            status=params.get("status") or None,
        )

    def page_of(
        self,
        records: Iterable[Record],
        *,
        created: Callable[[Record], datetime],
        status: Callable[[Record], str],
        render: Callable[[Record], dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The records this query selects, newest first, as one page's `data` and `meta`."""
        chosen = [
            record for record in records
            if (self.start is None or created(record) >= self.start)
            and (self.end is None or created(record) <= self.end)
            and (self.status is None or status(record) == self.status)
        ]
        chosen.sort(key=created, reverse=True)
        skipped = (self.page - 1) * self.per_page
        data = [render(record) for record in chosen[skipped:skipped + self.per_page]]
        meta = {"total": len(chosen), "skipped": skipped, "perPage": self.per_page, "page": self.page,
                "pageCount": max(1, math.ceil(len(chosen) / self.per_page))}
        return data, meta


def _positive(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if not DIGITS.fullmatch(value) or int(value) < 1:
        raise invalid(f"{name} must be a positive whole number")
    return int(value)


def _moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or timestamp (`2016-09-21`, `2016-09-24T00:00:05.000Z`); UTC when it has no offset."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise invalid(f"{name} must be an ISO 8601 date or timestamp") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
