"""What every HTTP request must pass before any route sees it.

A pure ASGI middleware (it never buffers a body), answering in the error envelope:

1. an anonymous caller of an authenticated route, or one with a bad token: 401 UNAUTHENTICATED, before its
   body is read or parsed;
2. a control character in the path (percent-decoded) or in a query parameter's name or value: 422
   VALIDATION_ERROR naming where (`app.core.text` is the rule; JSON bodies are checked where they are parsed,
   `app.core.routing`);
3. a body larger than MAX_REQUEST_BODY_BYTES: 413 PAYLOAD_TOO_LARGE, from `Content-Length` before reading it,
   or as soon as a body without one streams past the limit.

Paystack's webhook route keeps its own, larger limit: it checks its signature on the raw bytes.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.asgi import HttpMiddleware
from app.core.errors import PayloadTooLarge, ValidationFailed, render
from app.core.security import WEBHOOKS_PREFIX, authentication_error_for, load_signing_key
from app.core.text import has_control_characters

_CONTENT_LENGTH = re.compile(rb"[0-9]{1,19}")


class RequestGuardMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        super().__init__(app)
        self.max_body_bytes = max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        await load_signing_key(request)
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if _bounds_its_own_body(scope):
            await self.app(scope, receive, send)
            return
        await self._within_limit(scope, receive, send)

    def _refusal(self, request: Request) -> JSONResponse | None:
        scope = request.scope
        unauthenticated = authentication_error_for(request)
        if unauthenticated is not None:
            return render(unauthenticated)
        fields = _control_characters(scope)
        if fields:
            return render(ValidationFailed("Control characters are not allowed", fields=fields))
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes and not _bounds_its_own_body(scope):
            return self._too_large()
        return None

    def _too_large(self) -> JSONResponse:
        return render(PayloadTooLarge(f"Request bodies are limited to {self.max_body_bytes} bytes",
                                      limit=self.max_body_bytes))

    async def _within_limit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts the body as the app reads it. Past the limit the app's read fails, and whatever the app
        answers to that (or if it raises) the client gets the 413."""
        received = 0
        exceeded = started = refused = False

        async def receive_within_limit() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise PayloadTooLarge(limit=self.max_body_bytes)
            return message

        async def send_or_refuse(message: Message) -> None:
            nonlocal started, refused
            if exceeded and not started:
                started = refused = True
                await self._too_large()(scope, receive, send)
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_or_refuse)
        except Exception:
            if not exceeded or started:
                raise
            await self._too_large()(scope, receive, send)


def _bounds_its_own_body(scope: Scope) -> bool:
    return scope["path"].startswith(WEBHOOKS_PREFIX)


def _control_characters(scope: Scope) -> list[dict[str, object]]:
    """Where the path or the query string holds control characters, as validation error fields."""
    fields: list[dict[str, object]] = []
    if has_control_characters(scope["path"]):
        fields.append({"loc": ["path"], "message": "control characters are not allowed", "type": "control_character"})
    # parsed as Starlette parses it for the routes: percent-decoded as UTF-8
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if has_control_characters(name) or has_control_characters(value):
            fields.append({"loc": ["query", name], "message": "control characters are not allowed",
                           "type": "control_character"})
    return fields


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if _CONTENT_LENGTH.fullmatch(value) else None
    return None
