"""Readers for JSON request fields: a wrong type is a 400 in Paystack's envelope, never a 500."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from app.gateway.sandbox.envelope import invalid

DIGITS = re.compile(r"[0-9]+")


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body counts as {} so the missing fields get named."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise invalid("Invalid JSON body") from exc
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object")
    return body


def optional_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    return value


def required_text(body: Mapping[str, Any], name: str) -> str:
    value = optional_text(body, name)
    if value is None:
        raise invalid(f"{name} is required")
    return value


def parse_amount(value: object, *, message: str = "Invalid amount") -> int:
    """A positive amount in subunits, as a JSON integer or a string of digits (Paystack takes both)."""
    if isinstance(value, int) and not isinstance(value, bool):
        result = value
    elif isinstance(value, str) and DIGITS.fullmatch(value):
        result = int(value)
    else:
        raise invalid(message, next_step="Send a whole number of subunits (kobo, pesewas, cents)")
    if result <= 0:
        raise invalid(message, next_step="The amount must be greater than zero")
    return result


def integer(body: Mapping[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"{name} must be an integer")
    return value


def number(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid(f"{name} must be a number")
    return float(value)


def boolean(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(f"{name} must be true or false")
    return value


def query_integer(query: Mapping[str, str], name: str, default: int, *, maximum: int | None = None) -> int:
    """A positive whole number from the query string (at most `maximum`), or `default` when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not DIGITS.fullmatch(raw) or int(raw) < 1 or (maximum is not None and int(raw) > maximum):
        bound = f" up to {maximum}" if maximum is not None else ""
        raise invalid(f"{name} must be a whole number from 1{bound}")
    return int(raw)


def query_time(query: Mapping[str, str], name: str) -> datetime | None:
    """A date (`2016-09-21`) or ISO 8601 timestamp from the query string, in UTC; None when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(f"{name} must be a date or an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
