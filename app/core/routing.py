"""Routes that read JSON bodies exactly and strictly.

Starlette parses JSON numbers into floats, which cannot tell `1e3` from `1000.0`
and lose digits past the fifteenth. Here fractional numbers become `Decimal`, so
money fields see what the client wrote (and can refuse exponents).

The body is parsed here, before FastAPI's handler, so that every problem with it
is a 422 VALIDATION_ERROR naming where it is: bytes that are not UTF-8, JSON that
does not parse, nests deeper than MAX_JSON_DEPTH or holds NaN, and control
characters in any string or key (the one rule of `app.core.text`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any, NoReturn

from fastapi import Request, Response, params
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from app.core.errors import ValidationFailed
from app.core.text import has_control_characters

MAX_JSON_DEPTH = 32


def _refuse(loc: list[str], message: str, kind: str) -> NoReturn:
    raise ValidationFailed(f"Request body: {message}", fields=[{"loc": loc, "message": message, "type": kind}])


def _reject_constant(name: str) -> NoReturn:
    _refuse(["body"], f"{name} is not JSON", "json_invalid")


def _check_json(value: Any, loc: list[str], depth: int) -> None:
    """Depth and characters of a parsed body; recursion is bounded by MAX_JSON_DEPTH."""
    if isinstance(value, str):
        if has_control_characters(value, line_breaks_allowed=True):
            _refuse(loc, "control characters are not allowed", "control_character")
    elif isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            _refuse(loc, f"JSON nests deeper than {MAX_JSON_DEPTH} levels", "json_too_deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if has_control_characters(key):
                    _refuse(loc, "control characters are not allowed in keys", "control_character")
                _check_json(item, [*loc, key], depth + 1)
        else:
            for index, item in enumerate(value):
                _check_json(item, [*loc, str(index)], depth + 1)


def parse_exact_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _refuse(["body"], "not valid UTF-8", "json_invalid")
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        _refuse(["body"], f"JSON nests deeper than {MAX_JSON_DEPTH} levels", "json_too_deep")
    except json.JSONDecodeError as error:
        _refuse(["body", str(error.pos)], f"not valid JSON: {error.msg}", "json_invalid")
    except ValueError as error:  # an integer with more digits than Python converts
        _refuse(["body"], f"not valid JSON: {error}", "json_invalid")
    _check_json(value, ["body"], 0)
    return value


class ExactJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_exact_json(await self.body())
        return self._json


class ExactJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        # FastAPI turns any error while parsing into a 400; parsed first here, a bad body is our 422.
        reads_json = self.body_field is not None and not isinstance(self.body_field.field_info, params.Form)

        async def exact_handler(request: Request) -> Response:
            exact = ExactJSONRequest(request.scope, request.receive)
            if reads_json and await exact.body():
                await exact.json()
            return await handler(exact)

        return exact_handler


def plain_json(value: Any) -> Any:
    """Free-form JSON (metadata) back to plain types for storage: decimals as floats. A number too large for a
    float raises ValueError: it would be stored as `Infinity`, which is not JSON."""
    return json.loads(json.dumps(value, default=float, allow_nan=False))


class RoutesUnder(BaseRoute):
    """Routes whose paths all start with `prefix`, matched as one: a request for any other path is turned away by
    one string check instead of one match per route. Unlike a `Mount`, the routes keep their full paths, so their
    templates (in metrics too) do not change. The route that matched is `scope["route"]`, as the router leaves it."""

    def __init__(self, prefix: str, routes: Sequence[BaseRoute]) -> None:
        self._under = f"{prefix}/"
        outside = [route for route in routes if not getattr(route, "path", "").startswith(self._under)]
        if outside:
            raise ValueError(f"routes outside {prefix}: {outside}")
        self.path = prefix
        self.routes = list(routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not get_route_path(scope).startswith(self._under):
            return Match.NONE, {}
        partial: tuple[Match, Scope] | None = None
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, "route": route}
            if match is Match.PARTIAL and partial is None:
                partial = (match, {**child_scope, "route": route})
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["route"].handle(scope, receive, send)
