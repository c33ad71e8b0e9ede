"""JSON logs with a request id; secrets, signatures, tokens, account numbers and authorization
codes are never logged."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

import httpx
from starlette.types import Message, Receive, Scope, Send

from app.core.asgi import HttpMiddleware

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Gone whole: secret keys, bearer tokens, webhook signatures (hex SHA-512), card authorization codes.
_REDACT = re.compile(r"sk_(?:test|live)_[A-Za-z0-9]+|Bearer\s+[A-Za-z0-9._\-]+|[a-f0-9]{128}|\bAUTH_[A-Za-z0-9]+")
# The value of an account number, authorization code or transfer OTP named by its key: a query parameter
# (`account_number=...`), JSON (`"account_number": "..."`, escaped or not) or a Python repr.
_REDACT_VALUE = re.compile(
    r"""((?:account_number|authorization_code|\botp)\\?["']?\s*[:=]\s*\\?["']?)(?!null\b|None\b)[^\s"'&,;}\]\\]+"""
)
# Loggers that write one line per HTTP request with its URL: our calls to the gateway (httpx) and
# uvicorn's access log, which also sees the sandbox's own routes.
_REQUEST_LINE_LOGGERS = ("httpx", "uvicorn.access")
# Third-party loggers whose DEBUG lines dump SQL parameters (aiosqlite: every statement it runs).
_PARAMETER_DUMPING_LOGGERS = ("aiosqlite",)


def redact(text: str) -> str:
    """The last line of defence: what reaches a log line or an error column goes through here."""
    return _REDACT.sub("[redacted]", _REDACT_VALUE.sub(r"\1[redacted]", text))


def _without_query(arg: object) -> object:
    if isinstance(arg, httpx.URL):
        return arg.copy_with(query=None) if arg.query else arg
    if isinstance(arg, str):
        return arg.partition("?")[0]
    return arg


class DropQueryStrings(logging.Filter):
    """Request lines are logged with the path alone: a query string can carry an account number
    (Paystack's `GET /bank/resolve?account_number=...`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


_DROP_QUERY_STRINGS = DropQueryStrings()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _REQUEST_LINE_LOGGERS:
        logging.getLogger(name).addFilter(_DROP_QUERY_STRINGS)  # once: the same filter is not added twice
    for name in _PARAMETER_DUMPING_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))


class RequestIdMiddleware(HttpMiddleware):
    """Takes X-Request-ID from the caller (if sane) or makes one, and echoes it back."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", incoming) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
