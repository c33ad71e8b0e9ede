"""Routes that read JSON numbers exactly.

Starlette parses JSON numbers into floats, which cannot tell `1e3` from `1000.0`
and lose digits past the fifteenth. Here fractional numbers become `Decimal`, so
money fields see what the client wrote (and can refuse exponents).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class ExactJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class ExactJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_handler(request: Request) -> Response:
            return await handler(ExactJSONRequest(request.scope, request.receive))

        return exact_handler


def plain_json(value: Any) -> Any:
    """Free-form JSON (metadata) back to plain types for storage: decimals as floats."""
    return json.loads(json.dumps(value, default=float))
