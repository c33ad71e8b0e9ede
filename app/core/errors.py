"""One error tree, rendered in one place.

Every error the service emits, framework errors included, leaves as
`{"error": {"code": str, "message": str, "details": object}}`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core import metrics

log = logging.getLogger(__name__)


class AppError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status_code: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class InvalidSignature(AppError):
    code, status_code, default_message = "INVALID_SIGNATURE", 400, "Invalid webhook signature"


class InsufficientFunds(AppError):
    code, status_code, default_message = "INSUFFICIENT_FUNDS", 409, "Insufficient funds"


class InvalidAmount(AppError):
    code, status_code, default_message = "INVALID_AMOUNT", 422, "Invalid amount"


class Unauthorized(AppError):
    code, status_code, default_message = "UNAUTHORIZED", 403, "Not allowed"


class Unauthenticated(AppError):
    code, status_code, default_message = "UNAUTHENTICATED", 401, "Authentication required"


class ValidationFailed(AppError):
    code, status_code, default_message = "VALIDATION_ERROR", 422, "Request validation failed"


class NotFound(AppError):
    code, status_code, default_message = "NOT_FOUND", 404, "Not found"


class InvalidState(AppError):
    code, status_code, default_message = "INVALID_STATE", 409, "The object's state does not allow this"


class FundsFrozen(AppError):
    code, status_code, default_message = "FUNDS_FROZEN", 409, "Funds are frozen by a dispute"


class SharesUnavailable(AppError):
    code, status_code, default_message = "SHARES_UNAVAILABLE", 409, "Not enough shares available"


class CurrencyNotSupported(AppError):
    code, status_code, default_message = "CURRENCY_NOT_SUPPORTED", 422, "Currency not supported"


class FeatureDisabled(AppError):
    code, status_code, default_message = "FEATURE_DISABLED", 403, "Feature disabled"


class IdempotencyConflict(AppError):
    code, status_code, default_message = (
        "IDEMPOTENCY_CONFLICT",
        422,
        "Idempotency-Key was already used with another request",
    )


class IdempotencyInProgress(AppError):
    code, status_code, default_message = (
        "IDEMPOTENCY_IN_PROGRESS",
        409,
        "A request with this Idempotency-Key is in progress",
    )


class RateLimited(AppError):
    code, status_code, default_message = "RATE_LIMITED", 429, "Too many requests"


class GatewayFailure(AppError):
    code, status_code, default_message = "GATEWAY_ERROR", 502, "Payment gateway error"


class UpstreamError(Exception):
    """A service this one calls did not give a usable answer (the gateway's errors derive from it).
    Uncaught, it is answered 502 GATEWAY_ERROR with what `details()` tells."""

    message: str

    def details(self) -> dict[str, object]:
        return {}


class PaymentFailed(AppError):
    code, status_code, default_message = "PAYMENT_FAILED", 402, "Payment failed"


class InvalidBankAccount(AppError):
    """Details the gateway cannot verify: the caller's mistake, not a gateway fault to retry."""

    code, status_code, default_message = "INVALID_BANK_ACCOUNT", 422, "The gateway could not verify these details"


class InvalidOtp(AppError):
    """The gateway refused the OTP of a transfer it holds: the caller's to correct, not a gateway fault."""

    code, status_code, default_message = "INVALID_OTP", 422, "The gateway refused this OTP"


class PayloadTooLarge(AppError):
    code, status_code, default_message = "PAYLOAD_TOO_LARGE", 413, "Request body too large"


def error_response(
    code: str,
    message: str,
    status_code: int,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    metrics.ERRORS.labels(code=code).inc()
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}},
        status_code=status_code,
        headers=headers,
    )


def render(error: AppError, headers: dict[str, str] | None = None) -> JSONResponse:
    return error_response(error.code, error.message, error.status_code, error.details, headers)


_STATUS_CODES = {
    401: "UNAUTHENTICATED",
    403: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "INVALID_STATE",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
}
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method the app serves at this path: Starlette's 405 names only those of the first route that
    matched the path, and a path often has one route per method."""
    allowed = []
    for method in _HTTP_METHODS:
        probe = {"type": "http", "method": method, "path": request.scope["path"],
                 "root_path": request.scope.get("root_path", ""), "headers": [], "query_string": b""}
        if any(route.matches(dict(probe))[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def _validation_details(exc: RequestValidationError) -> dict[str, Any]:
    fields = []
    for err in exc.errors():
        fields.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return {"fields": fields}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return render(exc)

    @app.exception_handler(UpstreamError)
    async def _upstream_error(_: Request, exc: UpstreamError) -> JSONResponse:
        log.warning("gateway error: %s", exc.message)
        return render(GatewayFailure("The payment gateway did not complete the call", **exc.details()))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Anonymous callers never get here: app.core.guards answers them 401 before the body is read.
        amount_error = _amount_error(exc)
        if amount_error is not None:
            return render(amount_error)
        return render(ValidationFailed(**_validation_details(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status, code = exc.status_code, _STATUS_CODES.get(exc.status_code)
        if code is None and 400 <= status < 500:
            status, code = 422, "VALIDATION_ERROR"  # a request the framework could not read, e.g. a bad form
        elif code is None:
            code = "INTERNAL_ERROR"
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        headers = dict(exc.headers or {})
        if status == 405:
            headers["Allow"] = _allowed_methods(request)
        return error_response(code, message, status, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response("INTERNAL_ERROR", "Internal error", 500)


def _amount_error(exc: RequestValidationError) -> InvalidAmount | None:
    """Money fields carry their own code: a bad amount is INVALID_AMOUNT, not a generic 422."""
    for err in exc.errors():
        if err.get("type") == "invalid_amount":
            return InvalidAmount(str(err.get("msg", "Invalid amount")).removeprefix("Value error, "))
    return None
